"""What the engine tells the observability layer: one :class:`Event` per notable moment.

The engine knows nothing of metrics, traces or alerts. It hands each event to one
:class:`Observer` (the gateway fans it out to the request log, metrics and alerts). Observers are
called synchronously on the request's task, so they must be quick and must not block; an
exception an observer raises is logged and never disturbs the request.

Kinds, and the fields each one fills:

- ``attempt_started``: ``deployment``, ``attempt`` (its record: hedge, retry and probe flags).
- ``attempt_ended``: ``deployment``, ``attempt`` (outcome, error class, status), ``error`` for a
  failure. A loser that finishes in the background emits it when it ends, with outcome
  ``lost_completed`` or ``lost_failed``.
- ``hedge_started``: ``deployment`` (the target started beside a late one), ``attempt``.
- ``primary_timeout``: ``deployment`` (the first target, still running at its hedge delay: the
  fixed ``hedge_after``, or with ``auto`` the adaptive one; the observe layer alerts on the latter
  only when the route's hedge rate is high).
- ``bad_request_translation``: ``deployment`` (a target other than the route's first answered
  ``bad_request``: a translation gap is likely), ``error``.
- ``all_failed``: ``error`` (the :class:`~failover.errors.AllTargetsFailed`,
  :class:`~failover.errors.NoTargetAvailable`, or the unexpected exception of a bug); emitted
  whenever the answer is the default response or an error other than the client's own bad request.
- ``default_served``: the default response was given.
- ``stream_failed``: ``deployment``, ``attempt``, ``error``: a committed stream failed after its
  first chunk was sent (the client gets an error event, not a silent cut).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from failover.types import AttemptRecord

__all__ = ["Event", "EventKind", "NullObserver", "Observer", "notify"]

logger = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    """The moments the engine reports."""

    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_ENDED = "attempt_ended"
    HEDGE_STARTED = "hedge_started"
    PRIMARY_TIMEOUT = "primary_timeout"
    BAD_REQUEST_TRANSLATION = "bad_request_translation"
    ALL_FAILED = "all_failed"
    DEFAULT_SERVED = "default_served"
    STREAM_FAILED = "stream_failed"


@dataclass(slots=True)
class Event:
    """One moment of one request; ``at`` is seconds from the request's arrival.

    Observers must not change it (it is not frozen only because a frozen dataclass costs five
    times as much to build, and the engine builds two per attempt).

    ``attempt`` is the live record of the attempt concerned: a background loser completes it in
    place later, so an observer that keeps it sees its final state.
    """

    kind: EventKind
    route: str
    request_id: str
    at: float
    deployment: str | None = None
    attempt: AttemptRecord | None = None
    error: BaseException | None = None


class Observer(Protocol):
    """Receives the engine's events; must be quick and must not block."""

    def on_event(self, event: Event) -> None: ...


class NullObserver:
    """The observer that ignores everything (the default)."""

    __slots__ = ()

    def on_event(self, event: Event) -> None:
        return None

    def __repr__(self) -> str:
        return "<NullObserver>"


def notify(observer: Observer, event: Event) -> None:
    """Give ``event`` to ``observer``; whatever goes wrong there is logged, never raised."""
    try:
        observer.on_event(event)
    except Exception:
        logger.exception("observer %r failed on a %s event", observer, event.kind.value)
