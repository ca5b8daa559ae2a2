"""The Health contract, run on both state backends: MemoryHealth and RedisHealth on the real Redis.

Time is a ``ManualClock`` for both: MemoryHealth reads it, RedisHealth adds it to Redis ``TIME``
(``time_shift``), so ``clock.advance(30)`` moves both by 30 s. Real time also flows for Redis (a
few milliseconds per test), so times read back are compared with a wide margin and every
``advance`` stays at least a second away from the boundary it tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from failover.clock import ManualClock
from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import Admission, DeploymentState, Plan, Report
from failover.health.breaker import Transition
from failover.health.memory import MemoryHealth
from failover.state import RedisHealth

S = DeploymentState
SECRET = "sk-contract-secret-42"
CONFIG = HealthConfig(
    failure_threshold=3, recovery_seconds=30, max_recovery_seconds=120, rate_limit_cooldown=20
)
DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key=SECRET, timeout=10),
    "fallback": DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key=SECRET),
    "keyless": DeploymentConfig(provider="anthropic", model="claude", api_key=None),
}
TARGETS = ["main", "fallback", "keyless"]

Backend = MemoryHealth | RedisHealth


def about(seconds: float) -> object:
    """A duration read back from a backend, give or take real time spent in the test."""
    return pytest.approx(seconds, abs=0.5)


@dataclass
class World:
    """Makes backends of one kind on one shared clock (and, for Redis, one key prefix)."""

    kind: str
    prefix: str | None
    clock: ManualClock = field(default_factory=ManualClock)
    seen: list[Transition] = field(default_factory=list)
    made: list[RedisHealth] = field(default_factory=list)

    def health(self) -> Backend:
        if self.prefix is None:
            return MemoryHealth(CONFIG, DEPLOYMENTS, self.clock, on_transition=self.seen.append)
        health = RedisHealth(
            CONFIG,
            DEPLOYMENTS,
            self.clock,
            key_prefix=self.prefix,
            on_transition=self.seen.append,
            time_shift=self.clock.now,
            timeout=1.0,  # a loaded CI machine must not turn a test into a degraded-mode test
        )
        self.made.append(health)
        return health


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
def prefix(request: pytest.FixtureRequest) -> str | None:
    """None for MemoryHealth; a Redis key prefix of this test's own for RedisHealth."""
    if request.param == "memory":
        return None
    value = request.getfixturevalue("redis_prefix")
    assert isinstance(value, str)
    return value


@pytest.fixture
async def world(prefix: str | None) -> AsyncIterator[World]:
    """The backend factory of this parametrisation; Redis clients are closed afterwards."""
    made = World("memory" if prefix is None else "redis", prefix)
    yield made
    for health in made.made:
        assert not health.degraded, "Redis should have answered every call of a contract test"
        await health.aclose()


async def attempt(
    health: Backend,
    deployment: str,
    error_class: ErrorClass | None = None,
    *,
    retry_after: float | None = None,
) -> None:
    admission = await health.admit(deployment)
    assert admission is not None, f"{deployment} should admit an attempt"
    await health.report(admission, Report(error_class, retry_after, latency=0.1))


async def open_circuit(health: Backend, deployment: str = "main") -> None:
    for _ in range(CONFIG.failure_threshold):
        await attempt(health, deployment, ErrorClass.SERVER_ERROR)


async def test_fresh_backend_plans_configured_targets_in_order(world: World) -> None:
    """A fresh backend plans every configured target, in route order, and admits freely."""
    health = world.health()
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    assert await health.plan(["fallback", "main", "fallback"]) == Plan(("fallback", "main"))
    assert await health.admit("main") == Admission("main")


async def test_not_configured_is_never_planned_nor_admitted(world: World) -> None:
    """A deployment without a key is skipped, never admitted, and reads not_configured."""
    health = world.health()
    assert await health.plan(["keyless"]) == Plan(())
    assert await health.admit("keyless") is None
    assert await health.admit("keyless", probe=True) is None
    await health.report(Admission("keyless"), Report(ErrorClass.SERVER_ERROR))
    assert (await health.status())["keyless"].state is S.NOT_CONFIGURED


async def test_unknown_deployment_is_a_key_error(world: World) -> None:
    """Asking about a deployment the config does not have is a KeyError naming it."""
    health = world.health()
    with pytest.raises(KeyError, match="nope"):
        await health.plan(["main", "nope"])
    with pytest.raises(KeyError, match="nope"):
        await health.admit("nope")


async def test_threshold_of_consecutive_failures_opens_the_circuit(world: World) -> None:
    """failure_threshold consecutive failures open the circuit; a success in between resets."""
    health = world.health()
    await attempt(health, "main", ErrorClass.SERVER_ERROR)
    await attempt(health, "main", ErrorClass.TIMEOUT)
    await attempt(health, "main")
    await attempt(health, "main", ErrorClass.CONNECTION)
    await attempt(health, "main", ErrorClass.MALFORMED)
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    await attempt(health, "main", ErrorClass.SERVER_ERROR)
    assert await health.plan(TARGETS) == Plan(("fallback",))
    assert await health.admit("main") is None
    row = (await health.status())["main"]
    assert (row.state, row.failures, row.last_error) == (S.CIRCUIT_OPEN, 3, ErrorClass.SERVER_ERROR)
    assert row.until == about(30)
    assert [(t.deployment, t.alert) for t in world.seen] == [("main", "circuit_open")]
    assert world.seen[0].seconds == about(30)


async def test_request_faults_change_nothing(world: World) -> None:
    """bad_request and context_overflow are the request's fault: no failure is counted."""
    health = world.health()
    for _ in range(5):
        await attempt(health, "main", ErrorClass.BAD_REQUEST)
        await attempt(health, "main", ErrorClass.CONTEXT_OVERFLOW)
    row = (await health.status())["main"]
    assert (row.state, row.failures, row.last_error) == (S.AVAILABLE, 0, None)
    assert world.seen == []


async def test_rate_limit_cools_down_for_retry_after(world: World) -> None:
    """A 429 with Retry-After keeps the deployment off that long; without, rate_limit_cooldown."""
    health = world.health()
    await attempt(health, "main", ErrorClass.RATE_LIMIT, retry_after=5)
    assert await health.plan(TARGETS) == Plan(("fallback",))
    assert (await health.status())["main"].until == about(5)
    world.clock.advance(4)
    assert await health.plan(TARGETS) == Plan(("fallback",))
    world.clock.advance(2)
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    await attempt(health, "main", ErrorClass.RATE_LIMIT)
    world.clock.advance(19)
    assert await health.plan(TARGETS) == Plan(("fallback",))
    world.clock.advance(2)
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    assert [t.alert for t in world.seen] == ["rate_limited", "rate_limited"]
    assert (await health.status())["main"].failures == 0  # a 429 is not a failure


async def test_half_open_admits_exactly_one_probe(world: World) -> None:
    """When the break ends, many concurrent admits get one probe lease; its success closes."""
    health = world.health()
    await open_circuit(health)
    world.clock.advance(29)
    assert await health.plan(TARGETS) == Plan(("fallback",))
    world.clock.advance(2)
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    assert (await health.status())["main"].state is S.HALF_OPEN
    admissions = await asyncio.gather(*(health.admit("main") for _ in range(20)))
    probes = [a for a in admissions if a is not None]
    assert len(probes) == 1
    assert probes[0].probe
    assert probes[0].lease is not None
    assert await health.plan(TARGETS) == Plan(("fallback",))
    assert (await health.status())["main"].probe_in_flight
    await health.report(probes[0], Report(latency=0.2))
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    row = (await health.status())["main"]
    assert (row.state, row.failures, row.probe_in_flight) == (S.AVAILABLE, 0, False)
    assert [(t.before, t.after) for t in world.seen][-1] == (S.HALF_OPEN, S.AVAILABLE)


async def test_failed_probe_doubles_the_break(world: World) -> None:
    """A failed probe reopens the circuit for twice the last break."""
    health = world.health()
    await open_circuit(health)
    world.clock.advance(31)
    probe = await health.admit("main")
    assert probe is not None
    assert probe.probe
    await health.report(probe, Report(ErrorClass.SERVER_ERROR))
    assert (await health.status())["main"].until == about(60)
    world.clock.advance(59)
    assert await health.plan(["main"]) == Plan((), probe="main", retry_after=about(1))
    world.clock.advance(2)
    assert await health.plan(["main"]) == Plan(("main",))
    assert [t.after for t in world.seen] == [S.CIRCUIT_OPEN, S.CIRCUIT_OPEN]


async def test_probe_lease_expires_after_the_deployment_timeout(world: World) -> None:
    """A probe that never reports frees the slot after `timeout`; its late report decides none."""
    health = world.health()
    await open_circuit(health)
    world.clock.advance(31)
    lost = await health.admit("main")
    assert lost is not None
    assert lost.probe
    world.clock.advance(9)
    assert await health.admit("main") is None
    world.clock.advance(2)  # main's timeout is 10 s: the lease has expired
    probe = await health.admit("main")
    assert probe is not None
    assert probe.probe
    assert probe.lease != lost.lease
    await health.report(lost, Report(ErrorClass.SERVER_ERROR))  # late: an ordinary straggler
    row = (await health.status())["main"]
    assert (row.state, row.probe_in_flight) == (S.HALF_OPEN, True)
    assert await health.admit("main") is None
    await health.report(probe, Report())
    assert (await health.status())["main"].state is S.AVAILABLE


async def test_cancelled_probe_releases_the_lease_and_changes_nothing(world: World) -> None:
    """A probe failover cancelled frees the lease at once, and the circuit stays half-open."""
    health = world.health()
    await open_circuit(health)
    world.clock.advance(31)
    probe = await health.admit("main")
    assert probe is not None
    await health.report(probe, Report(cancelled=True, latency=1.0))
    row = (await health.status())["main"]
    assert (row.state, row.probe_in_flight, row.failures) == (S.HALF_OPEN, False, 3)
    again = await health.admit("main")
    assert again is not None
    assert again.probe


async def test_auth_opens_at_once_and_is_never_probed_early(world: World) -> None:
    """401/403 open the circuit on the first failure; rule 1 never probes an auth hold early."""
    health = world.health()
    await attempt(health, "main", ErrorClass.AUTH)
    assert await health.plan(["main"]) == Plan((), probe=None, retry_after=about(30))
    assert await health.admit("main", probe=True) is None
    row = (await health.status())["main"]
    assert (row.state, row.last_error) == (S.CIRCUIT_OPEN, ErrorClass.AUTH)
    assert [t.alert for t in world.seen] == ["auth_failed"]
    world.clock.advance(31)
    assert await health.plan(["main"]) == Plan(("main",))  # the break itself still ends


async def test_quota_holds_for_recovery_seconds(world: World) -> None:
    """An exhausted quota cools down for recovery_seconds and is never probed early."""
    health = world.health()
    await attempt(health, "fallback", ErrorClass.QUOTA)
    assert await health.plan(["fallback"]) == Plan((), probe=None, retry_after=about(30))
    assert await health.admit("fallback", probe=True) is None
    await attempt(health, "main", ErrorClass.SERVER_ERROR)  # another deployment is unaffected
    assert [t.alert for t in world.seen] == ["quota_exhausted"]
    world.clock.advance(29)
    assert await health.plan(["fallback"]) == Plan((), probe=None, retry_after=about(1))
    world.clock.advance(2)
    assert await health.plan(["fallback"]) == Plan(("fallback",))


async def test_rule_one_probes_the_soonest_when_everything_is_down(world: World) -> None:
    """All unavailable: the soonest end is the probe, one lease each; then only retry_after."""
    health = world.health()
    await attempt(health, "main", ErrorClass.RATE_LIMIT, retry_after=20)
    await attempt(health, "fallback", ErrorClass.RATE_LIMIT, retry_after=5)
    plan = await health.plan(TARGETS)
    assert plan == Plan((), probe="fallback", retry_after=about(5))
    probe = await health.admit("fallback", probe=True)
    assert probe is not None
    assert probe.probe
    assert await health.admit("fallback", probe=True) is None
    assert await health.plan(TARGETS) == Plan((), probe="main", retry_after=about(5))
    assert await health.admit("main", probe=True) is not None
    assert await health.plan(TARGETS) == Plan((), probe=None, retry_after=about(5))
    world.clock.advance(6)
    assert await health.plan(TARGETS) == Plan(("fallback",))


async def test_rule_one_with_only_holds_answers_retry_after(world: World) -> None:
    """Everything held for auth or quota: no probe at all, the soonest end as retry_after."""
    health = world.health()
    await attempt(health, "main", ErrorClass.AUTH)
    world.clock.advance(10)
    await attempt(health, "fallback", ErrorClass.QUOTA)
    assert await health.plan(TARGETS) == Plan((), probe=None, retry_after=about(20))
    assert await health.plan(TARGETS, early_probe=False) == Plan((), retry_after=about(20))


async def test_status_rows_have_the_v1_status_shape(world: World) -> None:
    """status() gives every deployment's row in config order, recent stats, and no secret."""
    health = world.health()
    admission = await health.admit("main")
    assert admission is not None
    await health.report(admission, Report(latency=0.25))
    await attempt(health, "fallback", ErrorClass.RATE_LIMIT, retry_after=12)
    world.clock.advance(2)
    rows = {name: row.as_dict() for name, row in (await health.status()).items()}
    assert list(rows) == ["main", "fallback", "keyless"]
    assert rows["main"]["state"] == "available"
    assert rows["main"]["latency"] == {"p50": 0.25, "p95": 0.25, "p99": 0.25}
    assert rows["main"]["success_rate"] == 1.0
    assert rows["fallback"]["state"] == "rate_limited"
    assert rows["fallback"]["cooldown_ends_in"] == about(10)
    assert rows["fallback"]["last_error"] == "rate_limit"
    assert rows["keyless"]["state"] == "not_configured"
    assert health.latency_quantile("main", 0.95) == 0.25
    assert health.latency_quantile("keyless", 0.95) is None
    assert SECRET not in repr(rows) + repr(health)
