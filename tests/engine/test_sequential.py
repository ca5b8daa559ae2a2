"""Sequential routes (rule 2): the ``001_*`` cases, the retry schedule, Retry-After, deadline."""

from __future__ import annotations

import asyncio

import pytest

from failover.clock import run_virtual
from failover.errors import AllTargetsFailed, ErrorClass, UpstreamError
from failover.server.status import status_of

from .fakes import (
    REQUEST,
    FakeProvider,
    RecordingHealth,
    engine_for,
    fail,
    ok,
    pending_tasks,
    play,
    records,
    route,
    waits,
)

NO_JITTER = {"backoff": 0.5, "max_backoff": 8.0, "jitter": False}


def test_primary_success() -> None:
    """001: the primary answers; the fallback is never called."""
    primary, fallback = FakeProvider("primary", [ok(0.4)]), FakeProvider("fallback", [ok(0.1)])
    played = play([primary, fallback], route(["primary", "fallback"]))
    assert played.result is not None
    assert played.result.deployment == "primary"
    assert played.final == [("primary", 0.0, 0.4, "success")]
    assert fallback.calls == []
    assert played.result.usage.total_tokens == 5


def test_fallback_on_primary_failure() -> None:
    """001: the primary fails (500, no retries left); the fallback runs at once and answers."""
    primary = FakeProvider("primary", [fail(0.3)])
    fallback = FakeProvider("fallback", [ok(0.2)])
    played = play([primary, fallback], route(["primary", "fallback"]))
    assert played.result is not None
    assert played.result.deployment == "fallback"
    assert played.final == [
        ("primary", 0.0, 0.3, "server_error"),
        ("fallback", 0.3, 0.5, "success"),
    ]


def test_both_fail_raises_all_targets_failed_with_each_error() -> None:
    """001: both fail and there is no default: AllTargetsFailed carries both errors."""
    primary = FakeProvider("primary", [fail(0.1, ErrorClass.SERVER_ERROR)])
    fallback = FakeProvider("fallback", [fail(0.1, ErrorClass.CONNECTION)])
    played = play([primary, fallback], route(["primary", "fallback"]))
    error = played.error
    assert isinstance(error, AllTargetsFailed)
    assert [
        (e.deployment, e.error_class) for e in error.errors if isinstance(e, UpstreamError)
    ] == [
        ("primary", ErrorClass.SERVER_ERROR),
        ("fallback", ErrorClass.CONNECTION),
    ]
    assert not error.deadline_passed
    assert status_of(error) == (502, "connection", None)
    assert played.observer.kinds() == ["all_failed"]


def test_401_is_never_retried_and_goes_to_the_next_target() -> None:
    """001: a 401 is not retried on its deployment (even with retries left); the next runs."""
    primary = FakeProvider("primary", [fail(0.1, ErrorClass.AUTH)], max_retries=3)
    fallback = FakeProvider("fallback", [ok(0.2)])
    played = play([primary, fallback], route(["primary", "fallback"], retry=NO_JITTER))
    assert played.final == [
        ("primary", 0.0, 0.1, "auth"),
        ("fallback", 0.1, 0.3, "success"),
    ]
    assert len(primary.calls) == 1


def test_exponential_schedule_without_jitter() -> None:
    """retry {backoff: 0.5, jitter: false}, max_retries 3: waits 0.5, 1, 2 seconds."""
    flaky = FakeProvider("flaky", [fail(0.0)], max_retries=3)

    async def scenario() -> BaseException | None:
        engine = engine_for([flaky])
        with pytest.raises(AllTargetsFailed) as caught:
            await engine.chat(route(["flaky"], retry=NO_JITTER), REQUEST, request_id="r")
        return caught.value

    error = run_virtual(scenario())
    starts = [c.start for c in flaky.calls]
    assert waits(flaky.calls) == [0.5, 1.0, 2.0]
    assert starts == pytest.approx([0.0, 0.5, 1.5, 3.5])
    assert isinstance(error, AllTargetsFailed)
    assert len(error.errors) == 4


def test_jittered_waits_stay_within_equal_jitter_bounds() -> None:
    """With jitter each wait is between half and all of backoff * 2**n."""
    flaky = FakeProvider("flaky", [fail(0.0)], max_retries=3)

    async def scenario() -> None:
        engine = engine_for([flaky], seed=7)
        retry = {"backoff": 0.5, "max_backoff": 8.0, "jitter": True}
        with pytest.raises(AllTargetsFailed):
            await engine.chat(route(["flaky"], retry=retry), REQUEST, request_id="r")

    run_virtual(scenario())
    sleeps = waits(flaky.calls)
    assert len(sleeps) == 3
    for n, wait in enumerate(sleeps):
        assert 0.25 * 2**n <= wait <= 0.5 * 2**n


def test_retry_after_is_honoured() -> None:
    """A 429 with Retry-After 2 on the only target is retried no sooner than 2 s later."""
    limited = FakeProvider(
        "limited", [fail(0.0, ErrorClass.RATE_LIMIT, retry_after=2.0), ok(0.1)], max_retries=1
    )
    played = play([limited], route(["limited"], retry=NO_JITTER))
    assert played.result is not None
    assert played.result.deployment == "limited"
    assert played.final == [
        ("limited", 0.0, 0.0, "rate_limit"),
        ("limited", 2.0, 2.1, "success"),
    ]
    assert played.result.attempts[1].retry == 1


def test_rate_limit_moves_on_when_another_target_is_available() -> None:
    """A 429 is not retried on its deployment while another target is left: it runs at once."""
    limited = FakeProvider("limited", [fail(0.0, ErrorClass.RATE_LIMIT, retry_after=0.1)])
    limited.max_retries = 2
    other = FakeProvider("other", [ok(0.1)])
    played = play([limited, other], route(["limited", "other"], retry=NO_JITTER))
    assert played.final == [
        ("limited", 0.0, 0.0, "rate_limit"),
        ("other", 0.0, 0.1, "success"),
    ]


def test_a_wait_past_the_deadline_is_not_taken() -> None:
    """Deadline 3: retries at 0.5 and 1.5; the next wait (2 s) would end at 3.5: next target."""
    flaky = FakeProvider("flaky", [fail(0.0)], max_retries=3)
    other = FakeProvider("other", [ok(0.2)])
    played = play([flaky, other], route(["flaky", "other"], retry=NO_JITTER, deadline=3.0))
    assert played.final == [
        ("flaky", 0.0, 0.0, "server_error"),
        ("flaky", 0.5, 0.5, "server_error"),
        ("flaky", 1.5, 1.5, "server_error"),
        ("other", 1.5, 1.7, "success"),
    ]


def test_the_attempt_timeout_is_a_timeout_failure_that_feeds_health() -> None:
    """An attempt past its deployment's timeout fails with class timeout, reported to health."""
    slow = FakeProvider("slow", [ok(10.0)], timeout=2.0)
    other = FakeProvider("other", [ok(0.5)])
    played = play([slow, other], route(["slow", "other"]))
    assert played.final == [("slow", 0.0, 2.0, "timeout"), ("other", 2.0, 2.5, "success")]
    assert played.health.reported("slow") == ["timeout"]
    assert slow.calls[0].outcome == "cancelled"


def test_the_deadline_cancels_the_running_attempt() -> None:
    """At the deadline the attempt is cancelled (no health) and AllTargetsFailed says so."""
    slow = FakeProvider("slow", [ok(10.0)])
    played = play([slow], route(["slow"], deadline=4.0))
    assert isinstance(played.error, AllTargetsFailed)
    assert played.error.deadline_passed
    assert played.answered_at == pytest.approx(4.0)
    assert played.final == [("slow", 0.0, 4.0, "cancelled")]
    assert played.health.reported("slow") == ["cancelled"]
    assert status_of(played.error) == (504, "deadline_exceeded", None)


def test_a_bad_request_ends_a_sequential_route_at_once() -> None:
    """Rule 9: the first target's 400 is the answer, even with a default; no alert."""
    bad = FakeProvider("bad", [fail(0.1, ErrorClass.BAD_REQUEST)], max_retries=2)
    other = FakeProvider("other", [ok(0.1)])
    played = play([bad, other], route(["bad", "other"], default_response="D"))
    assert played.error is not None
    assert getattr(played.error, "error_class", None) is (ErrorClass.BAD_REQUEST)
    assert str(played.error) == "upstream said bad_request"
    assert other.calls == []
    assert played.observer.kinds() == []
    assert status_of(played.error) == (400, "bad_request", None)


def test_a_sequential_route_creates_no_task() -> None:
    """The hot path: a sequential request runs its attempts on the caller's own task."""
    flaky = FakeProvider("flaky", [fail(0.1), ok(0.1)], max_retries=1)

    async def scenario() -> list[int]:
        engine = engine_for([flaky])
        seen: list[int] = []

        async def watch() -> None:
            while True:
                seen.append(len(pending_tasks()))
                await asyncio.sleep(0.05)

        watcher = asyncio.get_running_loop().create_task(watch())
        await engine.chat(route(["flaky"], retry=NO_JITTER), REQUEST, request_id="r")
        watcher.cancel()
        return seen

    # Only the main task and the watcher itself: the engine added none.
    assert set(run_virtual(scenario())) == {1}


def test_retries_are_recorded_with_their_index() -> None:
    """Records number the retries of a deployment."""
    flaky = FakeProvider("flaky", [fail(0.0), fail(0.0), ok(0.0)], max_retries=2)
    played = play([flaky], route(["flaky"], retry=NO_JITTER))
    assert played.result is not None
    assert [a.retry for a in played.result.attempts] == [0, 1, 2]
    assert records(played.result.attempts)[-1] == ("flaky", 1.5, 1.5, "success")


def test_health_is_told_each_outcome_once() -> None:
    """Rule 7: one report per attempt, with the upstream's outcome."""
    flaky = FakeProvider("flaky", [fail(0.0), ok(0.0)], max_retries=1)
    health = RecordingHealth()
    play([flaky], route(["flaky"], retry=NO_JITTER), health=health)
    assert health.reported("flaky") == ["server_error", "success"]
    assert health.admits == [("flaky", False), ("flaky", False)]


def test_a_timeout_ending_with_the_deadline_is_the_deadline() -> None:
    """When the attempt's timeout and the deadline coincide, the deadline wins: no health."""
    slow = FakeProvider("slow", [ok(10.0)], timeout=4.0)
    played = play([slow], route(["slow"], deadline=4.0))
    assert isinstance(played.error, AllTargetsFailed)
    assert played.error.deadline_passed
    assert played.final == [("slow", 0.0, 4.0, "cancelled")]
    assert played.health.reported("slow") == ["cancelled"]
