"""The attempt tracker: attempts per open request, losers after the answer, both bounded."""

from __future__ import annotations

from failover.engine.events import Event, EventKind
from failover.observe.tracker import AttemptTracker, LoserEnd
from failover.types import AttemptRecord


def _started(tracker: AttemptTracker, request_id: str, record: AttemptRecord) -> None:
    tracker.started(
        Event(EventKind.ATTEMPT_STARTED, "intent", request_id, 0.0, record.deployment, record)
    )


def _ended(tracker: AttemptTracker, request_id: str, record: AttemptRecord) -> LoserEnd | None:
    return tracker.ended(
        Event(EventKind.ATTEMPT_ENDED, "intent", request_id, 1.0, record.deployment, record)
    )


def test_only_attempts_running_at_the_answer_are_losers() -> None:
    """An attempt that ends before its request is answered is not a loser; one after is."""
    tracker = AttemptTracker()
    done = AttemptRecord("main", start=0.0)
    running = AttemptRecord("fallback", start=0.2)
    _started(tracker, "req_1", done)
    _started(tracker, "req_1", running)
    done.end, done.outcome = 0.5, "success"
    assert _ended(tracker, "req_1", done) is None
    assert tracker.finish("req_1") == [done, running]
    assert repr(tracker) == "<AttemptTracker open=0 losers=1>"
    running.end, running.outcome = 2.0, "lost_failed"
    assert _ended(tracker, "req_1", running) == LoserEnd("req_1", 1, running)
    assert _ended(tracker, "req_1", running) is None  # once only
    assert tracker.finish("req_unknown") == []


def test_bounds_forget_the_oldest() -> None:
    """Requests never finished and losers never ended are forgotten oldest first, counted."""
    tracker = AttemptTracker(max_open=2, max_losers=1)
    for n in range(3):
        _started(tracker, f"req_{n}", AttemptRecord("main", start=0.0))
    assert tracker.open_requests() == 2
    assert tracker.forgotten == 1
    assert tracker.finish("req_0") == []  # forgotten
    tracker.finish("req_1")
    tracker.finish("req_2")
    assert tracker.running_losers() == 1
    assert tracker.forgotten == 2
