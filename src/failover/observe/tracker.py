"""Which attempts belong to which request, from the engine's events to the request's answer.

The engine reports each attempt as it starts, with its live :class:`~failover.types.AttemptRecord`
(completed in place as it runs). :class:`AttemptTracker` keeps those records per request until
:meth:`~AttemptTracker.finish` hands them over, and remembers the attempts still running then
(losers kept in the background by ``finish_losers``): when one of them ends,
:meth:`~AttemptTracker.ended` names it, so that its record and span can be completed after the
request's.

Both maps are bounded: a request that is never finished (a caller that forgot to report it) or a
loser that is never ended cannot grow memory without limit; the oldest entries are forgotten first.

>>> from failover.engine.events import Event, EventKind
>>> from failover.types import AttemptRecord
>>> tracker = AttemptTracker()
>>> record = AttemptRecord("main", start=0.0)
>>> tracker.started(Event(EventKind.ATTEMPT_STARTED, "intent", "req_1", 0.0, "main", record))
>>> [r.deployment for r in tracker.finish("req_1")]
['main']
>>> record.outcome = "lost_completed"
>>> tracker.ended(Event(EventKind.ATTEMPT_ENDED, "intent", "req_1", 3.0, "main", record))
LoserEnd(request_id='req_1', seq=0, record=<Attempt 'main' 0.000-… lost_completed>)
"""

from __future__ import annotations

from collections import OrderedDict
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
    """Live attempt records per open request, and the losers of answered ones."""

    __slots__ = ("_losers", "_max_losers", "_max_open", "_open", "forgotten")

    def __init__(self, *, max_open: int = 50_000, max_losers: int = 50_000) -> None:
        self._open: OrderedDict[str, list[AttemptRecord]] = OrderedDict()
        # Keyed by the record's identity: the engine hands the same object to every event of
        # one attempt, and we hold it, so its id cannot be reused meanwhile.
        self._losers: OrderedDict[int, LoserEnd] = OrderedDict()
        self._max_open = max_open
        self._max_losers = max_losers
        self.forgotten = 0  # entries dropped to stay within the bounds

    def started(self, event: Event) -> None:
        """Note the attempt of an ``attempt_started`` event."""
        if event.attempt is None:
            return
        records = self._open.get(event.request_id)
        if records is None:
            records = self._open[event.request_id] = []
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)
                self.forgotten += 1
        records.append(event.attempt)

    def finish(self, request_id: str) -> list[AttemptRecord]:
        """The request's attempts in the order they started; the running ones become losers."""
        records = self._open.pop(request_id, [])
        for seq, record in enumerate(records):
            if record.end is None:
                self._losers[id(record)] = LoserEnd(request_id, seq, record)
                while len(self._losers) > self._max_losers:
                    self._losers.popitem(last=False)
                    self.forgotten += 1
        return records

    def ended(self, event: Event) -> LoserEnd | None:
        """For an ``attempt_ended`` event: the loser it ends, or None when its request is open."""
        if event.attempt is None:
            return None
        return self._losers.pop(id(event.attempt), None)

    def open_requests(self) -> int:
        return len(self._open)

    def running_losers(self) -> int:
        return len(self._losers)

    def __repr__(self) -> str:
        return f"<AttemptTracker open={len(self._open)} losers={len(self._losers)}>"
