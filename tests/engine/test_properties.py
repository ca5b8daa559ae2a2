"""Properties of any request over random fault scripts, on virtual time.

Per target: a script of calls (latency, then success, an error class, or a hang), a timeout and
``max_retries``; per route: sequential or hedged, a deadline, ``finish_losers``, a default or not,
jitter, a tight or loose retry budget. Whatever the script:

- the answer never comes after the deadline;
- the first success wins, and a success is returned whenever some call succeeded before the
  deadline (a 400 starts nothing new, so anything that succeeded was already running: the rule
  still holds);
- with no success the answer is the first 400, else the default, else AllTargetsFailed, and it
  comes as soon as nothing is left to wait for;
- no task is left pending after the request but kept losers, and none after ``aclose()``;
- a caller that cancels gets CancelledError at once, every attempt then running cancelled;
- attempts never exceed targets x (1 + max_retries); every attempt ends and is reported to
  health exactly once, cancelled ones as cancelled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover.errors import AllTargetsFailed, ErrorClass, UpstreamError
from failover.types import AttemptOutcome

from .fakes import DEFAULT, FakeProvider, Played, Step, play, route

EPSILON = 1e-6
OUTCOMES = ["success", "success", "hang", *ErrorClass]


@st.composite
def steps(draw: st.DrawFn) -> Step:
    latency = draw(st.integers(0, 24)) / 4
    outcome = draw(st.sampled_from(OUTCOMES))
    if outcome == "hang":
        return Step(hang=True)
    if outcome == "success":
        return Step(latency)
    retry_after = draw(st.sampled_from([None, 0.5, 2.0]))
    return Step(latency, error=ErrorClass(outcome), retry_after=retry_after)


@st.composite
def providers(draw: st.DrawFn, name: str) -> FakeProvider:
    return FakeProvider(
        name,
        draw(st.lists(steps(), min_size=1, max_size=3)),
        timeout=draw(st.sampled_from([1.0, 3.0, 30.0])),
        max_retries=draw(st.integers(0, 2)),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[FakeProvider], dict[str, Any], int]:
    count = draw(st.integers(1, 3))
    fakes = [draw(providers("abc"[i])) for i in range(count)]
    deadline = draw(st.sampled_from([0.5, 1.0, 2.5, 4.0, 5.5]))
    hedges = [h for h in (0.25, 0.5, 1.0, 1.5, 2.5) if h < deadline]
    options: dict[str, Any] = {
        "deadline": deadline,
        "hedge_after": draw(st.sampled_from([None, *hedges])),
        "finish_losers": draw(st.sampled_from([0.0, 1.0, 4.0])),
        "default_response": draw(st.sampled_from([None, DEFAULT])),
        "retry": {
            "backoff": draw(st.sampled_from([0.0, 0.25, 0.5])),
            "max_backoff": 4.0,
            "jitter": draw(st.booleans()),
        },
        "retry_budget": draw(
            st.sampled_from([{}, {"ratio": 0.0, "min_per_second": 0.0}]),
        ),
    }
    return fakes, options, draw(st.integers(0, 2**16))


# A third of the requests are cancelled by their caller at some point (maybe after the answer).
cancel_times = st.one_of(st.none(), st.none(), st.integers(0, 24).map(lambda n: n / 4))


def health_view(outcome: str, error_class: str | None) -> str:
    """What health must have been told for a record with this outcome."""
    if outcome == AttemptOutcome.CANCELLED:
        return "cancelled"
    if outcome in (AttemptOutcome.SUCCESS, AttemptOutcome.LOST_COMPLETED):
        return "success"
    assert error_class is not None
    return error_class


def check(played: Played, fakes: list[FakeProvider], options: dict[str, Any]) -> None:
    if isinstance(played.error, asyncio.CancelledError):
        check_cancelled(played)
        return
    deadline = options["deadline"]
    calls = [(fake.name, call) for fake in fakes for call in fake.calls]
    successes = sorted(
        (call.end, name)
        for name, call in calls
        if call.outcome == "completed" and call.end is not None
    )
    early_successes = [(end, name) for end, name in successes if end < deadline - EPSILON]

    # The answer never comes after the deadline.
    assert played.answered_at <= deadline + EPSILON

    result = played.result
    if result is not None and not result.degraded:
        # The first success wins, at the moment it came.
        first_end = successes[0][0]
        assert abs(played.answered_at - first_end) < EPSILON
        assert result.deployment in {name for end, name in successes if end == first_end}
    else:
        # No success: nothing succeeded before the deadline.
        assert early_successes == []
        bad_requests = [r for r in played.final if r[3] == ErrorClass.BAD_REQUEST.value]
        error = played.error
        if bad_requests:
            assert isinstance(error, UpstreamError)
            assert error.error_class is ErrorClass.BAD_REQUEST
        elif options["default_response"] is not None:
            assert result is not None
            assert result.text == DEFAULT
        else:
            assert isinstance(error, AllTargetsFailed), repr(error)
        failed = error if isinstance(error, AllTargetsFailed) else None
        if failed is None and played.observer.events:
            last = played.observer.events[-2 if result is not None else -1].error
            failed = last if isinstance(last, AllTargetsFailed) else None
        if failed is not None and not failed.deadline_passed:
            # Everything had ended: the answer came with the last failure, not later.
            assert abs(played.answered_at - max(r[2] or 0.0 for r in played.final)) < EPSILON

    # No task left behind.
    assert played.only_losers_left
    assert played.left_after_close == 0

    # Attempts are bounded; each ends and is reported once, cancelled ones as cancelled.
    assert len(played.final) <= sum(1 + fake.max_retries for fake in fakes)
    for fake in fakes:
        assert len(fake.calls) <= 1 + fake.max_retries
    assert all(end is not None for _, _, end, _ in played.final)
    check_health(played)


def check_health(played: Played) -> None:
    """Each attempt was reported once, with its upstream outcome or as cancelled."""
    expected = Counter(
        (a.deployment, health_view(a.outcome, a.error_class)) for a in played.attempts
    )
    told = Counter(
        (
            name,
            "cancelled"
            if report.cancelled
            else (report.error_class.value if report.error_class else "success"),
        )
        for name, report in played.health.reports
    )
    assert told == expected


def check_cancelled(played: Played) -> None:
    """Rule 6: everything running was cancelled at once, and nothing is left behind."""
    assert played.only_losers_left
    assert played.background_at_answer == 0
    assert played.left_after_close == 0
    for _, _, end, outcome in played.at_answer:
        assert end is not None
        assert end <= played.answered_at + EPSILON
        # An upstream may have answered at the very instant of the cancellation: a tie.
        assert outcome != AttemptOutcome.SUCCESS or abs(end - played.answered_at) < EPSILON
    running_then = [r for r in played.at_answer if r[3] == AttemptOutcome.CANCELLED]
    assert all(abs((r[2] or 0.0) - played.answered_at) < EPSILON for r in running_then)
    check_health(played)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios(), cancel_times)
def test_any_fault_script_keeps_the_rules(
    scenario: tuple[list[FakeProvider], dict[str, Any], int],
    cancel_at: float | None,
) -> None:
    """Deadline, first success wins, answer kinds, no task left, bounded and reported attempts."""
    fakes, options, seed = scenario
    config = route([f.name for f in fakes], **options)
    played = play(fakes, config, seed=seed, settle=10.0, cancel_at=cancel_at)
    check(played, fakes, options)
