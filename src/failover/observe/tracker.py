"""Losers that end after their request was reported: which request, which position.

The engine hands each request's attempt records to its caller, who reports them with the request
(:meth:`~failover.observe.Observability.request_finished`). An attempt still running then (a loser
kept in the background by ``finish_losers``) ends later, with an ``attempt_ended`` event that
carries its live record but not its position among the request's attempts. :class:`AttemptTracker`
remembers, for each record still running when its request was reported, that request and
position, so that the loser's row and span can be completed after the request's.

The map is bounded: a loser that never ends (a caller that never reports its end) cannot grow
memory without limit; the oldest entries are forgotten first.

>>> from failover.engine.events import Event, EventKind
>>> from failover.types import AttemptRecord
>>> tracker = AttemptTracker()
>>> done, loser = AttemptRecord("main", start=0.0, end=1.0), AttemptRecord("fallback", start=0.5)
>>> tracker.finished("req_1", [done, loser])
>>> loser.end, loser.outcome = 3.0, "lost_completed"
>>> tracker.ended(Event(EventKind.ATTEMPT_ENDED, "intent", "req_1", 3.0, "fallback", loser))
LoserEnd(request_id='req_1', seq=1, record=<Attempt 'fallback' 0.500-3.000 lost_completed>)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from failover.engine.events import Event
from failover.types import AttemptRecord

__all__ = ["AttemptTracker", "LoserEnd"]


@dataclass(frozen=True, slots=True)
class LoserEnd:
    """An attempt that ended after its request was answered: the ``seq``-th of ``request_id``."""

    request_id: str
    seq: int
    record: AttemptRecord


class AttemptTracker:
    """The attempts still running when their request was reported, until they end."""

    __slots__ = ("_losers", "_max_losers", "forgotten")

    def __init__(self, *, max_losers: int = 50_000) -> None:
        # Keyed by the record's identity: the engine hands the same object to every event of
        # one attempt, and we hold it, so its id cannot be reused meanwhile.
        self._losers: OrderedDict[int, LoserEnd] = OrderedDict()
        self._max_losers = max_losers
        self.forgotten = 0  # entries dropped to stay within the bound

    def finished(self, request_id: str, records: Sequence[AttemptRecord]) -> None:
        """``request_id`` was reported with ``records``: those still running become losers."""
        for seq, record in enumerate(records):
            if record.end is None:
                self._losers[id(record)] = LoserEnd(request_id, seq, record)
                if len(self._losers) > self._max_losers:
                    self._losers.popitem(last=False)
                    self.forgotten += 1

    def ended(self, event: Event) -> LoserEnd | None:
        """For an ``attempt_ended`` event: the loser it ends, or None when its request has not
        been reported yet (the report then sees the record complete)."""
        if event.attempt is None or not self._losers:
            return None
        return self._losers.pop(id(event.attempt), None)

    def running_losers(self) -> int:
        return len(self._losers)

    def __repr__(self) -> str:
        return f"<AttemptTracker losers={len(self._losers)}>"
