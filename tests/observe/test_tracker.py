"""The attempt tracker: attempts still running when their request is reported, until they end."""

from __future__ import annotations

from failover.engine.events import Event, EventKind
from failover.observe.tracker import AttemptTracker, LoserEnd
from failover.types import AttemptRecord


def _ended(tracker: AttemptTracker, request_id: str, record: AttemptRecord) -> LoserEnd | None:
    return tracker.ended(
        Event(EventKind.ATTEMPT_ENDED, "intent", request_id, 1.0, record.deployment, record)
    )


def test_only_attempts_running_at_the_report_are_losers() -> None:
    """An attempt that ended before its request was reported is not a loser; one after is."""
    tracker = AttemptTracker()
    done = AttemptRecord("main", start=0.0)
    running = AttemptRecord("fallback", start=0.2)
    done.end, done.outcome = 0.5, "success"
    assert _ended(tracker, "req_1", done) is None  # its request is not reported yet
    tracker.finished("req_1", [done, running])
    assert repr(tracker) == "<AttemptTracker losers=1>"
    running.end, running.outcome = 2.0, "lost_failed"
    assert _ended(tracker, "req_1", running) == LoserEnd("req_1", 1, running)
    assert _ended(tracker, "req_1", running) is None  # once only
    assert tracker.running_losers() == 0


def test_losers_of_two_requests_keep_their_own_positions() -> None:
    """Each loser is named by its own request and its index among that request's attempts."""
    tracker = AttemptTracker()
    first = [AttemptRecord("main", start=0.0, end=0.1), AttemptRecord("fallback", start=0.0)]
    second = [AttemptRecord("fallback", start=0.0)]
    tracker.finished("req_a", first)
    tracker.finished("req_b", second)
    assert _ended(tracker, "req_b", second[0]) == LoserEnd("req_b", 0, second[0])
    assert _ended(tracker, "req_a", first[1]) == LoserEnd("req_a", 1, first[1])


def test_the_bound_forgets_the_oldest_loser() -> None:
    """Losers that never end are forgotten oldest first, and counted."""
    tracker = AttemptTracker(max_losers=2)
    losers = [AttemptRecord("main", start=0.0) for _ in range(3)]
    for n, record in enumerate(losers):
        tracker.finished(f"req_{n}", [record])
    assert tracker.running_losers() == 2
    assert tracker.forgotten == 1
    assert _ended(tracker, "req_0", losers[0]) is None  # forgotten
    assert _ended(tracker, "req_2", losers[2]) == LoserEnd("req_2", 0, losers[2])
