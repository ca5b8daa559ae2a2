"""Hedged routes (rule 3) with losers (rule 4), health (rule 7), bad requests (rule 9), budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from failover.clock import run_virtual
from failover.errors import AllTargetsFailed, ErrorClass, UpstreamError

from .fakes import (
    DEFAULT,
    REQUEST,
    FakeProvider,
    Played,
    RecordingObserver,
    engine_for,
    fail,
    hang,
    ok,
    pending_tasks,
    play,
    route,
)

NO_JITTER = {"backoff": 0.5, "max_backoff": 8.0, "jitter": False}


def three(a: FakeProvider, b: FakeProvider, c: FakeProvider, **options: Any) -> Played:
    """Targets [a, b, c] hedged every second."""
    return play([a, b, c], route(["a", "b", "c"], hedge_after=1.0, **options))


def test_hedges_start_one_after_another() -> None:
    """Each hedge starts hedge_after seconds after the attempt started before it."""
    a, b, c = FakeProvider("a", [hang()]), FakeProvider("b", [hang()]), FakeProvider("c", [ok(0.5)])
    played = three(a, b, c)
    assert played.final == [
        ("a", 0.0, 2.5, "cancelled"),
        ("b", 1.0, 2.5, "cancelled"),
        ("c", 2.0, 2.5, "success"),
    ]
    assert played.result is not None
    assert [r.hedge for r in played.result.attempts] == [False, True, True]


def test_losers_after_the_winner_are_cancelled_and_before_it_too_without_finish_losers() -> None:
    """Rule 4: b wins at 2.5; c (after it) and a (before it, finish_losers 0) are cancelled."""
    a = FakeProvider("a", [ok(5.0)])
    b = FakeProvider("b", [ok(1.5)])
    c = FakeProvider("c", [hang()])
    played = three(a, b, c)
    assert played.final == [
        ("a", 0.0, 2.5, "cancelled"),
        ("b", 1.0, 2.5, "success"),
        ("c", 2.0, 2.5, "cancelled"),
    ]
    assert [call.outcome for call in a.calls + c.calls] == ["cancelled", "cancelled"]
    assert played.background_at_answer == 0


def test_losers_before_the_winner_finish_in_the_background_with_finish_losers() -> None:
    """Rule 4: with finish_losers, a (before b) runs on to lost_completed; c is still cancelled."""
    a = FakeProvider("a", [ok(5.0)])
    b = FakeProvider("b", [ok(1.5)])
    c = FakeProvider("c", [hang()])
    played = three(a, b, c, finish_losers=4.0)
    assert played.answered_at == pytest.approx(2.5)
    assert played.background_at_answer == 1
    assert played.only_losers_left
    assert played.final == [
        ("a", 0.0, 5.0, "lost_completed"),
        ("b", 1.0, 2.5, "success"),
        ("c", 2.0, 2.5, "cancelled"),
    ]
    assert played.health.reported("a") == ["success"]
    assert played.left_after_close == 0


def test_a_background_loser_is_cut_finish_losers_after_the_win() -> None:
    """A loser still running finish_losers seconds after the win is cancelled (no health)."""
    a = FakeProvider("a", [ok(20.0)])
    b = FakeProvider("b", [ok(1.5)])
    played = play([a, b], route(["a", "b"], hedge_after=1.0, finish_losers=4.0))
    assert played.final == [("a", 0.0, 6.5, "cancelled"), ("b", 1.0, 2.5, "success")]
    assert played.health.reported("a") == ["cancelled"]


def test_a_background_loser_ends_at_its_own_timeout_as_lost_failed() -> None:
    """A loser whose own timeout comes first ends lost_failed, class timeout, fed to health."""
    a = FakeProvider("a", [ok(20.0)], timeout=4.0)
    b = FakeProvider("b", [ok(1.5)])
    played = play([a, b], route(["a", "b"], hedge_after=1.0, finish_losers=4.0))
    assert played.final == [("a", 0.0, 4.0, "lost_failed"), ("b", 1.0, 2.5, "success")]
    assert played.result is not None
    assert played.result.attempts[0].error_class == "timeout"
    assert played.health.reported("a") == ["timeout"]


def test_a_background_loser_that_fails_is_lost_failed() -> None:
    """A loser failing after the win is recorded lost_failed with its class."""
    a = FakeProvider("a", [fail(3.0)])
    b = FakeProvider("b", [ok(0.5)])
    played = play([a, b], route(["a", "b"], hedge_after=1.0, finish_losers=4.0))
    assert played.final == [("a", 0.0, 3.0, "lost_failed"), ("b", 1.0, 1.5, "success")]
    assert played.result is not None
    assert played.result.attempts[0].error_class == "server_error"


def test_the_loser_pool_is_bounded() -> None:
    """Past max_background, a loser is cancelled instead of kept."""
    a = FakeProvider("a", [ok(5.0)])
    b = FakeProvider("b", [ok(0.5)])

    async def scenario() -> tuple[int, int, list[str]]:
        engine = engine_for([a, b], max_background=1)
        config = route(["a", "b"], hedge_after=1.0, finish_losers=4.0)
        await engine.chat(config, REQUEST, request_id="r1")
        second = await engine.chat(config, REQUEST, request_id="r2")
        kept = len(engine.background)
        await engine.aclose()
        return kept, len(pending_tasks()), [r.outcome for r in second.attempts]

    kept, left, outcomes = run_virtual(scenario())
    assert kept == 1
    assert left == 0
    assert outcomes == ["cancelled", "success"]


def test_aclose_ends_background_losers() -> None:
    """aclose() cancels the losers still running; their records say cancelled."""
    a = FakeProvider("a", [ok(3.0)])
    b = FakeProvider("b", [ok(0.5)])

    async def scenario() -> tuple[int, list[str], int, str]:
        engine = engine_for([a, b])
        config = route(["a", "b"], hedge_after=1.0, finish_losers=4.0)
        result = await engine.chat(config, REQUEST, request_id="r1")
        running = len(engine.background)
        await engine.aclose()
        return running, [r.outcome for r in result.attempts], len(pending_tasks()), repr(engine)

    running, outcomes, left, text = run_virtual(scenario())
    assert running == 1
    assert outcomes == ["cancelled", "success"]
    assert left == 0
    assert text == "<Engine routes=1 background=0>"


def test_a_failure_starts_the_next_target_at_once() -> None:
    """Rule 3: when an attempt fails, the next target starts at once (no hedge flag)."""
    a = FakeProvider("a", [fail(0.2)])
    b = FakeProvider("b", [hang()])
    c = FakeProvider("c", [ok(0.1)])
    played = three(a, b, c)
    assert played.final == [
        ("a", 0.0, 0.2, "server_error"),
        ("b", 0.2, 1.3, "cancelled"),
        ("c", 1.2, 1.3, "success"),
    ]
    assert played.result is not None
    assert [r.hedge for r in played.result.attempts] == [False, False, True]


def test_retries_wait_until_every_target_has_started() -> None:
    """Rule 3: a's retry comes only once b has started, after its backoff from a's failure."""
    a = FakeProvider("a", [fail(0.1), ok(0.1)], max_retries=1)
    b = FakeProvider("b", [hang()])
    c = FakeProvider("c", [hang()])
    played = three(a, b, c, retry=NO_JITTER)
    # a fails at 0.1: b starts at once; c is hedged at 1.1; a's retry (ready at 0.6) then runs.
    assert played.final == [
        ("a", 0.0, 0.1, "server_error"),
        ("b", 0.1, 1.2, "cancelled"),
        ("c", 1.1, 1.2, "cancelled"),
        ("a", 1.1, 1.2, "success"),
    ]


def test_bad_request_from_a_hedge_does_not_abort_a_running_attempt() -> None:
    """Rule 9: b's 400 starts nothing new (c never runs); a, still running, wins at 3.0."""
    a = FakeProvider("a", [ok(3.0)])
    b = FakeProvider("b", [fail(0.2, ErrorClass.BAD_REQUEST)])
    c = FakeProvider("c", [ok(0.1)])
    played = three(a, b, c)
    assert played.result is not None
    assert played.result.deployment == "a"
    assert played.final == [
        ("a", 0.0, 3.0, "success"),
        ("b", 1.0, 1.2, "bad_request"),
    ]
    assert c.calls == []
    assert played.observer.timeline() == [
        ("primary_timeout", 1.0, "a"),
        ("hedge_started", 1.0, "b"),
        ("bad_request_translation", 1.2, "b"),
    ]


def test_bad_request_is_answered_when_nothing_else_succeeds_never_the_default() -> None:
    """Rule 9: nothing else succeeds: the first 400 is raised at the deadline, not the default."""
    a = FakeProvider("a", [hang()])
    b = FakeProvider("b", [fail(0.0, ErrorClass.BAD_REQUEST)])
    played = play(
        [a, b], route(["a", "b"], hedge_after=1.0, deadline=3.0, default_response=DEFAULT)
    )
    assert isinstance(played.error, UpstreamError)
    assert played.error.error_class is ErrorClass.BAD_REQUEST
    assert played.error.deployment == "b"
    assert played.answered_at == pytest.approx(3.0)
    assert "all_failed" not in played.observer.kinds()
    assert played.final == [("a", 0.0, 3.0, "cancelled"), ("b", 1.0, 1.0, "bad_request")]


def test_a_bad_request_drops_a_pending_retry_without_spinning() -> None:
    """Rule 9 with a retry already due and an attempt still running: no retry, no busy loop."""
    a = FakeProvider("a", [fail(1.0, ErrorClass.BAD_REQUEST)])
    b = FakeProvider("b", [fail(0.1), ok(0.1)], max_retries=1)
    c = FakeProvider("c", [hang()])
    played = play(
        [a, b, c],
        route(["a", "b", "c"], hedge_after=0.5, deadline=3.0, retry={"backoff": 1.0}),
    )
    assert isinstance(played.error, UpstreamError)
    assert played.error.error_class is ErrorClass.BAD_REQUEST
    assert played.answered_at == pytest.approx(3.0)
    assert len(b.calls) == 1
    assert played.final == [
        ("a", 0.0, 1.0, "bad_request"),
        ("b", 0.5, 0.6, "server_error"),
        ("c", 0.6, 3.0, "cancelled"),
    ]


def test_a_bad_request_from_the_first_target_is_no_translation_gap() -> None:
    """Rule 9: a 400 from the route's first target raises no bad_request_translation."""
    a = FakeProvider("a", [fail(0.0, ErrorClass.BAD_REQUEST)])
    b = FakeProvider("b", [ok(0.1)])
    played = play([a, b], route(["a", "b"], hedge_after=1.0))
    assert isinstance(played.error, UpstreamError)
    assert played.observer.kinds() == []
    assert b.calls == []


def test_cancelled_attempts_change_no_health() -> None:
    """Rule 7: only upstream outcomes are reported; failover's cancellations say cancelled."""
    a = FakeProvider("a", [ok(5.0)])
    b = FakeProvider("b", [fail(0.1)])
    c = FakeProvider("c", [ok(0.5)])
    played = three(a, b, c)
    health = played.health
    assert health.reported("a") == ["cancelled"]
    assert health.reported("b") == ["server_error"]
    assert health.reported("c") == ["success"]
    for _, report in health.reports:
        if report.cancelled:
            assert report.error_class is None


def test_the_budget_stops_hedges_under_load() -> None:
    """With ratio 0.1 and no floor, 20 requests with a slow primary hedge only twice."""
    slow = FakeProvider("slow", [ok(2.0)])
    fast = FakeProvider("fast", [ok(0.1)])

    async def scenario() -> list[str | None]:
        engine = engine_for([slow, fast])
        config = route(
            ["slow", "fast"],
            hedge_after=1.0,
            retry_budget={"ratio": 0.1, "min_per_second": 0, "window_seconds": 60},
        )
        winners = []
        for n in range(20):
            result = await engine.chat(config, REQUEST, request_id=f"r{n}")
            winners.append(result.deployment)
        return winners

    winners = run_virtual(scenario())
    assert winners.count("fast") == 2
    assert winners.count("slow") == 18
    assert len(fast.calls) == 2


def test_the_budget_never_stops_a_fallback() -> None:
    """Past the budget a failure still moves to the next target; no retry is added."""
    broken = FakeProvider("broken", [fail(0.1)], max_retries=2)
    spare = FakeProvider("spare", [ok(0.1)])
    observer = RecordingObserver()

    async def scenario() -> list[str | None]:
        engine = engine_for([broken, spare], observer=observer)
        config = route(
            ["broken", "spare"],
            hedge_after=1.0,
            retry={"backoff": 0.01, "jitter": False},
            retry_budget={"ratio": 0.0, "min_per_second": 0},
        )
        return [
            (await engine.chat(config, REQUEST, request_id=f"r{n}")).deployment for n in range(5)
        ]

    assert run_virtual(scenario()) == ["spare"] * 5
    assert len(broken.calls) == 5  # never retried
    assert len(spare.calls) == 5


def test_the_budget_stops_sequential_retries() -> None:
    """With no budget, a sequential route moves on instead of retrying."""
    broken = FakeProvider("broken", [fail(0.0)], max_retries=2)
    spare = FakeProvider("spare", [ok(0.1)])
    played = play(
        [broken, spare],
        route(["broken", "spare"], retry_budget={"ratio": 0.0, "min_per_second": 0}),
    )
    assert played.final == [("broken", 0.0, 0.0, "server_error"), ("spare", 0.0, 0.1, "success")]


def test_everything_fails_without_a_default_raises_with_each_error() -> None:
    """Every attempt failed, no default: AllTargetsFailed has the errors in the order they ended."""
    a = FakeProvider("a", [fail(2.0, ErrorClass.SERVER_ERROR)])
    b = FakeProvider("b", [fail(0.5, ErrorClass.RATE_LIMIT, retry_after=7.0)])
    played = play([a, b], route(["a", "b"], hedge_after=1.0))
    assert isinstance(played.error, AllTargetsFailed)
    assert [getattr(e, "deployment", None) for e in played.error.errors] == ["b", "a"]
    assert played.answered_at == pytest.approx(2.0)


def test_a_deadline_passing_while_hedged_raises_with_deadline_passed() -> None:
    """No default, both hang: AllTargetsFailed(deadline_passed=True) at the deadline."""
    a, b = FakeProvider("a", [hang()]), FakeProvider("b", [hang()])
    played = play([a, b], route(["a", "b"], hedge_after=1.0, deadline=2.0))
    assert isinstance(played.error, AllTargetsFailed)
    assert played.error.deadline_passed
    assert played.answered_at == pytest.approx(2.0)
    assert played.final == [("a", 0.0, 2.0, "cancelled"), ("b", 1.0, 2.0, "cancelled")]


def test_the_request_task_is_the_only_one_left_after_an_answer() -> None:
    """No attempt task outlives a hedged request without finish_losers."""
    a, b = FakeProvider("a", [ok(3.0)]), FakeProvider("b", [ok(0.5)])

    async def scenario() -> int:
        engine = engine_for([a, b])
        await engine.chat(route(["a", "b"], hedge_after=1.0), REQUEST, request_id="r")
        await asyncio.sleep(0)
        return len(pending_tasks())

    assert run_virtual(scenario()) == 0
