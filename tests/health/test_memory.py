"""MemoryHealth through the async Health protocol the engine consumes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from failover.clock import LoopClock, ManualClock, run_virtual
from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import Admission, DeploymentState, Health, Plan, Report
from failover.health.breaker import Transition
from failover.health.memory import MemoryHealth

S = DeploymentState
SECRET = "sk-very-secret-123"


def deployments() -> dict[str, DeploymentConfig]:
    return {
        "main": DeploymentConfig(provider="groq", model="llama", api_key=SECRET, timeout=10),
        "fallback": DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key=SECRET),
        "keyless": DeploymentConfig(provider="anthropic", model="claude", api_key=None),
    }


def make(*, window_size: int = 256) -> tuple[MemoryHealth, ManualClock, list[Transition]]:
    clock = ManualClock(500.0)
    seen: list[Transition] = []
    config = HealthConfig(failure_threshold=2, recovery_seconds=30, max_recovery_seconds=120)
    health = MemoryHealth(
        config, deployments(), clock, on_transition=seen.append, window_size=window_size
    )
    return health, clock, seen


async def fail(
    health: Health, deployment: str, error_class: ErrorClass, retry_after: float | None = None
) -> None:
    admission = await health.admit(deployment)
    assert admission is not None
    await health.report(admission, Report(error_class, retry_after))


async def test_is_a_health_backend() -> None:
    """A fresh MemoryHealth plans every configured target in order."""
    health: Health = make()[0]
    assert await health.plan(["main", "keyless", "fallback"]) == Plan(("main", "fallback"))
    assert await health.admit("main") == Admission("main")


async def test_not_configured_is_never_planned_nor_admitted() -> None:
    """A deployment whose key is unset is skipped and shows not_configured."""
    health, _, _ = make()
    assert await health.plan(["keyless"]) == Plan(())
    assert await health.admit("keyless") is None
    assert await health.admit("keyless", probe=True) is None
    assert (await health.status())["keyless"].state is S.NOT_CONFIGURED


async def test_failing_primary_is_skipped_then_probed_once() -> None:
    """Open circuit: skipped; break over: planned as half-open, one admission only."""
    health, clock, seen = make()
    await fail(health, "main", ErrorClass.SERVER_ERROR)
    await fail(health, "main", ErrorClass.SERVER_ERROR)
    assert await health.plan(["main", "fallback"]) == Plan(("fallback",))
    assert [t.alert for t in seen] == ["circuit_open"]
    clock.advance(30)
    assert await health.plan(["main", "fallback"]) == Plan(("main", "fallback"))
    first, second = await asyncio.gather(health.admit("main"), health.admit("main"))
    assert first == Admission("main", probe=True, lease=540.0)
    assert second is None
    assert await health.plan(["main", "fallback"]) == Plan(("fallback",))
    assert first is not None
    await health.report(first, Report(latency=0.4))
    assert await health.plan(["main", "fallback"]) == Plan(("main", "fallback"))
    assert [(t.before, t.after) for t in seen][-1] == (S.HALF_OPEN, S.AVAILABLE)


async def test_rule_one_probes_the_soonest_when_everything_is_down() -> None:
    """All down: the soonest end is the probe; its lease taken, the next soonest; then none."""
    health, clock, _ = make()
    await fail(health, "main", ErrorClass.RATE_LIMIT, retry_after=20)
    await fail(health, "fallback", ErrorClass.RATE_LIMIT, retry_after=5)
    targets = ["main", "fallback", "keyless"]
    assert await health.plan(targets) == Plan((), probe="fallback", retry_after=5.0)
    probe = await health.admit("fallback", probe=True)
    assert probe == Admission("fallback", probe=True, lease=530.0)
    assert await health.admit("fallback", probe=True) is None
    assert await health.plan(targets) == Plan((), probe="main", retry_after=5.0)
    assert await health.admit("main", probe=True) is not None
    assert await health.plan(targets) == Plan((), probe=None, retry_after=5.0)
    clock.advance(5)
    assert await health.plan(targets) == Plan(("fallback",))


async def test_rule_one_with_only_holds_answers_retry_after() -> None:
    """Auth and quota holds are never probed early: the plan has only retry_after."""
    health, _, seen = make()
    await fail(health, "main", ErrorClass.AUTH)
    await fail(health, "fallback", ErrorClass.QUOTA)
    assert await health.plan(["main", "fallback"]) == Plan((), probe=None, retry_after=30.0)
    assert await health.admit("main", probe=True) is None
    assert [t.alert for t in seen] == ["auth_failed", "quota_exhausted"]


async def test_status_rows_have_the_v1_status_shape() -> None:
    """status() gives every deployment's row, in config order, without any secret."""
    health, clock, _ = make()
    admission = await health.admit("main")
    assert admission is not None
    await health.report(admission, Report(latency=0.25))
    await fail(health, "fallback", ErrorClass.RATE_LIMIT, retry_after=12)
    clock.advance(2)
    rows = {name: row.as_dict() for name, row in (await health.status()).items()}
    assert list(rows) == ["main", "fallback", "keyless"]
    assert rows["main"]["state"] == "available"
    assert rows["main"]["latency"] == {"p50": 0.25, "p95": 0.25, "p99": 0.25}
    assert rows["main"]["success_rate"] == 1.0
    assert rows["fallback"]["state"] == "rate_limited"
    assert rows["fallback"]["cooldown_ends_in"] == 10.0
    assert rows["fallback"]["last_error"] == "rate_limit"
    assert rows["keyless"]["state"] == "not_configured"
    assert health.snapshot() == await health.status()
    assert SECRET not in repr(rows) + repr(health) + repr(health.breaker("main"))


async def test_latency_quantile_for_adaptive_hedging() -> None:
    """p95 of recent latencies, cancelled attempts counted at their elapsed time."""
    health, _, _ = make()
    for latency in [0.1] * 18:
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(latency=latency))
    for _ in range(2):
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(cancelled=True, latency=3.0))
    assert health.latency_quantile("main", 0.95) == 3.0
    assert health.latency_quantile("main", 0.5) == 0.1
    assert health.latency_quantile("fallback", 0.95) is None


async def test_window_size_bounds_the_stats() -> None:
    """window_size caps the samples kept per deployment."""
    health, _, _ = make(window_size=8)
    for _ in range(100):
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(latency=0.1))
    assert len(health.breaker("main").stats) == 8


async def test_a_failing_observer_does_not_break_reporting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception in on_transition is logged; the transition still happened."""

    def explode(transition: Transition) -> None:
        raise RuntimeError("exporter down")

    health = MemoryHealth(HealthConfig(), deployments(), ManualClock(), on_transition=explode)
    with caplog.at_level(logging.INFO, logger="failover.health.memory"):
        await fail(health, "main", ErrorClass.AUTH)
    assert (await health.plan(["main"])).available == ()
    assert "health transition observer failed" in caplog.text
    assert "'main': available -> circuit_open (auth)" in caplog.text


async def test_unknown_deployment_is_a_key_error() -> None:
    """A name that is not a deployment fails loudly, naming it."""
    health, _, _ = make()
    with pytest.raises(KeyError, match="unknown deployment 'nope'"):
        await health.plan(["main", "nope"])
    with pytest.raises(KeyError, match="'nope'"):
        await health.admit("nope")


def test_runs_on_the_loop_clock_in_virtual_time() -> None:
    """With the production LoopClock, a break ends after recovery_seconds of loop time."""

    async def scenario() -> list[Plan]:
        health = MemoryHealth(
            HealthConfig(failure_threshold=1, recovery_seconds=60), deployments(), LoopClock()
        )
        await fail(health, "main", ErrorClass.TIMEOUT)
        plans = [await health.plan(["main"], early_probe=False)]
        await asyncio.sleep(59)
        plans.append(await health.plan(["main"], early_probe=False))
        await asyncio.sleep(1)
        plans.append(await health.plan(["main"], early_probe=False))
        return plans

    assert run_virtual(scenario(), start=100.0) == [
        Plan((), retry_after=60.0),
        Plan((), retry_after=1.0),
        Plan(("main",)),
    ]
