"""hedge_after: auto: recent p95 within the bounds, cold start, budget, an honest estimate."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from failover.clock import LoopClock, run_virtual
from failover.config import HealthConfig
from failover.engine.adaptive import MIN_SAMPLES, HedgeDelays
from failover.engine.route import HedgeMode, HedgePolicy
from failover.health.memory import MemoryHealth
from failover.types import ChatResult

from .fakes import (
    REQUEST,
    FakeProvider,
    RecordingObserver,
    Step,
    engine_for,
    hang,
    ok,
    play,
    records,
    route,
)

# 18 answers of 0.1 s and 2 of 0.8 s: the nearest-rank p95 of these 20 is 0.8 s.
WARM = [ok(0.1)] * 18 + [ok(0.8)] * 2


@dataclass
class Run:
    """The last request of a scenario, its times relative to its own start."""

    result: ChatResult
    attempts: list[tuple[str, float, float | None, str]]
    events: list[tuple[str, float, str | None]]
    p95: dict[str, float | None]  # each deployment's, right after the last request


def warm_then(
    a_steps: Sequence[Step],
    b_steps: Sequence[Step],
    *,
    warm: int = 20,
    **options: Any,
) -> Run:
    """``warm`` requests one after another, then one more; targets [a, b], hedge_after auto."""
    a, b = FakeProvider("a", a_steps), FakeProvider("b", b_steps)
    config = route(["a", "b"], hedge_after="auto", **options)

    async def scenario() -> Run:
        health = MemoryHealth(HealthConfig(), {p.name: p.deployment for p in (a, b)}, LoopClock())
        observer = RecordingObserver()
        engine = engine_for([a, b], health, observer=observer)  # type: ignore[arg-type]
        for n in range(warm):
            await engine.chat(config, REQUEST, request_id=f"warm-{n}")
        result = await engine.chat(config, REQUEST, request_id="last")
        p95 = {name: health.latency_quantile(name, 0.95) for name in ("a", "b")}
        await engine.aclose()
        events = [
            (e.kind.value, round(e.at, 6), e.deployment)
            for e in observer.events
            if e.request_id == "last"
        ]
        return Run(result, records(result.attempts), events, p95)

    return run_virtual(scenario())


def test_auto_hedges_at_the_primary_deployments_recent_p95() -> None:
    """Primary p95 is 0.8 s: the hedge starts 0.8 s after the primary did."""
    run = warm_then([*WARM, ok(5.0)], [ok(0.1)], hedge_bounds=(0.05, 3.0))
    assert run.attempts == [("a", 0.0, 0.9, "cancelled"), ("b", 0.8, 0.9, "success")]
    assert run.result.attempts[1].hedge


def test_auto_reports_primary_timeout_at_its_adaptive_delay() -> None:
    """The engine emits primary_timeout at the adaptive delay; the observe layer judges it."""
    run = warm_then([*WARM, ok(5.0)], [ok(0.1)], hedge_bounds=(0.05, 3.0))
    assert ("primary_timeout", 0.8, "a") in run.events


def test_auto_delay_is_clamped_to_the_upper_bound() -> None:
    """A p95 of 0.8 s with bounds [0.05, 0.5] hedges at 0.5 s."""
    run = warm_then([*WARM, ok(5.0)], [ok(0.1)], hedge_bounds=(0.05, 0.5))
    assert run.attempts == [("a", 0.0, 0.6, "cancelled"), ("b", 0.5, 0.6, "success")]


def test_auto_delay_is_clamped_to_the_lower_bound() -> None:
    """A p95 of 0.01 s with bounds [0.2, 3] hedges at 0.2 s, not sooner."""
    run = warm_then([*[ok(0.01)] * 20, ok(5.0)], [ok(0.1)], hedge_bounds=(0.2, 3.0))
    assert run.attempts == [("a", 0.0, 0.3, "cancelled"), ("b", 0.2, 0.3, "success")]


def test_auto_without_bounds_uses_the_default_bounds() -> None:
    """No hedge_bounds: [0.2, 10]; a p95 of 0.8 s is inside them."""
    run = warm_then([*WARM, ok(5.0)], [ok(0.1)])
    assert run.attempts[1][:2] == ("b", 0.8)


def test_auto_cold_start_waits_for_the_upper_bound() -> None:
    """With fewer than MIN_SAMPLES samples the hedge waits for the upper bound."""
    run = warm_then(
        [*WARM[: MIN_SAMPLES - 1], ok(5.0)], [ok(0.1)], warm=MIN_SAMPLES - 1, hedge_bounds=(0.05, 3)
    )
    assert run.attempts == [("a", 0.0, 3.1, "cancelled"), ("b", 3.0, 3.1, "success")]


def test_auto_without_latency_stats_hedges_at_the_upper_bound() -> None:
    """A health backend that keeps no latencies: every delay is the cold start's upper bound."""
    a, b = FakeProvider("a", [ok(5.0)]), FakeProvider("b", [ok(0.1)])
    played = play([a, b], route(["a", "b"], hedge_after="auto", hedge_bounds=(0.5, 3.0)))
    assert played.final == [("a", 0.0, 3.1, "cancelled"), ("b", 3.0, 3.1, "success")]
    assert played.observer.kinds() == ["primary_timeout"]


def test_the_retry_budget_stops_auto_hedges() -> None:
    """With no budget for extra attempts, a late primary is not hedged: it answers at 5 s."""
    run = warm_then(
        [*WARM, ok(5.0)],
        [ok(0.1)],
        hedge_bounds=(0.05, 3.0),
        retry_budget={"ratio": 0.0, "min_per_second": 0.0},
    )
    assert run.attempts == [("a", 0.0, 5.0, "success")]


def test_hedges_do_not_drag_the_estimate_down() -> None:
    """One primary in ten is slow and cut short by a hedge: p95 stays at the hedge point.

    Its complete answers alone (45 of 0.1 s, 2 of 0.8 s) have a p95 of 0.1 s: leaving the cut
    primaries out would hedge nearly every request. Counted at their elapsed 0.9 s, they keep it.
    """
    tenth_slow = ([ok(0.1)] * 9 + [ok(5.0)]) * 3
    run = warm_then([*WARM, *tenth_slow, ok(5.0)], [ok(0.1)], warm=50, hedge_bounds=(0.05, 3.0))
    assert run.attempts == [("a", 0.0, 1.0, "cancelled"), ("b", 0.9, 1.0, "success")]
    assert run.p95["a"] == pytest.approx(0.9)


def test_early_cancelled_hedges_do_not_drag_their_deployments_estimate_down() -> None:
    """b's hedges that lose 0.05 s after they start leave b's p95 at its complete answers'."""
    b_steps = [*[ok(0.5)] * 18, *[ok(1.0)] * 2, ok(1.0)]
    run = warm_then([*[ok(5.0)] * 20, ok(3.05)], b_steps, warm=50, hedge_bounds=(1.0, 3.0))
    # b answered the first 20 requests (hedged at a's cold-start 3 s); then it lost 31 races
    # 0.05 s after it started. Counted as 0.05 s answers they would make b's p95 0.5 s.
    assert run.attempts == [("a", 0.0, 3.05, "success"), ("b", 3.0, 3.05, "cancelled")]
    assert run.p95["b"] == pytest.approx(1.0)


def test_attempts_still_running_raise_the_estimate() -> None:
    """Ten primaries still running after 2 s (background losers) lift p95 from 0.1 s to 2 s."""
    a = FakeProvider("a", [*[ok(0.1)] * 20, *[ok(10.0)] * 10, ok(10.0)])
    b = FakeProvider("b", [ok(0.05)])
    config = route(["a", "b"], hedge_after="auto", hedge_bounds=(0.05, 5.0), finish_losers=30)

    async def scenario() -> tuple[list[tuple[str, float, float | None, str]], float | None]:
        health = MemoryHealth(HealthConfig(), {p.name: p.deployment for p in (a, b)}, LoopClock())
        engine = engine_for([a, b], health)  # type: ignore[arg-type]
        for n in range(20):
            await engine.chat(config, REQUEST, request_id=f"warm-{n}")
        before = health.latency_quantile("a", 0.95)
        # Ten concurrent requests: each hedged at 0.1 s, won by b; a's attempts run on.
        await asyncio.gather(
            *(engine.chat(config, REQUEST, request_id=f"burst-{n}") for n in range(10))
        )
        await asyncio.sleep(2.0)
        last = await engine.chat(config, REQUEST, request_id="last")
        await engine.aclose()
        return records(last.attempts), before

    attempts, before = run_virtual(scenario())
    assert before == pytest.approx(0.1)
    assert attempts[1][0] == "b"
    assert attempts[1][1] == pytest.approx(2.0 + 0.15, abs=0.01)


def test_hedge_delays_track_running_attempts() -> None:
    """started/ended keep the running set; ending twice is harmless; the repr counts them."""
    delays = HedgeDelays(None)
    delays.started("a", 1, 0.0)
    delays.started("a", 2, 0.0)
    delays.ended("a", 1)
    delays.ended("a", 1)
    assert len(delays) == 1
    assert repr(delays) == "<HedgeDelays running=1>"
    assert delays.delay("a", HedgePolicy(HedgeMode.AUTO, 4.0, (0.2, 4.0)), 1.0) == 4.0


def test_no_hang_leaves_a_running_attempt_behind() -> None:
    """Every attempt that ended, cancelled included, leaves the running set."""
    a, b = FakeProvider("a", [hang()]), FakeProvider("b", [ok(0.1)])

    async def scenario() -> int:
        engine = engine_for([a, b])
        await engine.chat(route(["a", "b"], hedge_after=0.5), REQUEST, request_id="r")
        await engine.aclose()
        return len(engine._delays)

    assert run_virtual(scenario()) == 0
