"""RedisHealth as N gateways see it: one shared view, one probe, few round trips, own keys only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis

from failover.clock import ManualClock
from failover.config import DeploymentConfig, HealthConfig, StateConfig
from failover.errors import ErrorClass
from failover.health.base import Admission, DeploymentState, Plan, Report
from failover.health.breaker import Transition
from failover.state import RedisHealth

pytestmark = pytest.mark.services

S = DeploymentState
CONFIG = HealthConfig(failure_threshold=2, recovery_seconds=30, max_recovery_seconds=120)
DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=10),
    "fallback": DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key="sk-b"),
}
TARGETS = ["main", "fallback"]

Gateway = Callable[..., RedisHealth]


@pytest.fixture
async def gateway(redis_url: str, redis_prefix: str) -> AsyncIterator[Gateway]:
    """Makes gateways on this test's prefix; all are closed afterwards."""
    made: list[RedisHealth] = []

    def make(
        clock: ManualClock,
        *,
        cache_seconds: float = 1.0,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> RedisHealth:
        health = RedisHealth(
            CONFIG,
            DEPLOYMENTS,
            clock,
            url=redis_url,
            key_prefix=redis_prefix,
            time_shift=clock.now,
            timeout=1.0,
            cache_seconds=cache_seconds,
            on_transition=on_transition,
        )
        made.append(health)
        return health

    yield make
    for health in made:
        assert not health.degraded
        await health.aclose()


async def fail(health: RedisHealth, deployment: str, error: ErrorClass, **report: float) -> None:
    admission = await health.admit(deployment)
    assert admission is not None
    await health.report(admission, Report(error, **report))


async def test_a_circuit_opened_by_one_gateway_is_open_for_all(gateway: Gateway) -> None:
    """Failures seen by A open the circuit; B then plans without it and admits nothing there."""
    clock = ManualClock()
    a, b = gateway(clock), gateway(clock)
    assert await b.plan(TARGETS) == Plan(("main", "fallback"))
    await fail(a, "main", ErrorClass.SERVER_ERROR)
    await fail(a, "main", ErrorClass.TIMEOUT)
    assert await b.plan(TARGETS) == Plan(("fallback",))
    assert await b.admit("main") is None
    assert (await b.status())["main"].state is S.CIRCUIT_OPEN


async def test_failures_from_several_gateways_add_up(gateway: Gateway) -> None:
    """Consecutive failures are counted fleet-wide: one at A and one at B reach the threshold."""
    clock = ManualClock()
    seen_a: list[Transition] = []
    seen_b: list[Transition] = []
    a, b = gateway(clock, on_transition=seen_a.append), gateway(clock, on_transition=seen_b.append)
    await fail(a, "main", ErrorClass.SERVER_ERROR)
    await fail(b, "main", ErrorClass.SERVER_ERROR)
    assert await a.plan(TARGETS) == Plan(("fallback",))
    # The gateway whose report made the transition tells it, once for the whole fleet.
    assert seen_a == []
    assert [t.alert for t in seen_b] == ["circuit_open"]


async def test_a_429_seen_by_one_gateway_makes_the_others_wait(gateway: Gateway) -> None:
    """A's 429 with Retry-After 8 keeps main off B's plans until it ends."""
    clock = ManualClock()
    a, b = gateway(clock), gateway(clock)
    await fail(a, "main", ErrorClass.RATE_LIMIT, retry_after=8)
    assert await b.plan(TARGETS) == Plan(("fallback",))
    assert await b.plan(["main"]) == Plan((), probe="main", retry_after=pytest.approx(8, abs=0.5))
    clock.advance(7)
    assert await b.plan(TARGETS) == Plan(("fallback",))
    clock.advance(2)
    assert await b.plan(TARGETS) == Plan(("main", "fallback"))


async def test_half_open_gives_one_probe_across_gateways(gateway: Gateway) -> None:
    """Many concurrent admits through A and B after the break: exactly one gets the probe."""
    clock = ManualClock()
    a, b = gateway(clock), gateway(clock)
    await fail(a, "main", ErrorClass.SERVER_ERROR)
    await fail(a, "main", ErrorClass.SERVER_ERROR)
    clock.advance(31)
    assert await a.plan(TARGETS) == await b.plan(TARGETS) == Plan(("main", "fallback"))
    racers = [gw.admit("main") for _ in range(25) for gw in (a, b)]
    admissions = [x for x in await asyncio.gather(*racers) if x is not None]
    assert len(admissions) == 1
    assert admissions[0].probe
    # The probe lease is shared: a failed probe reported through A reopens for B as well.
    await a.report(admissions[0], Report(ErrorClass.SERVER_ERROR))
    assert await b.plan(TARGETS) == Plan(("fallback",))
    assert (await b.status())["main"].until == pytest.approx(60, abs=0.5)


async def test_a_probe_lease_taken_by_one_gateway_is_released_by_its_cancel(
    gateway: Gateway,
) -> None:
    """A cancelled probe at A frees the lease, so B can take it at once."""
    clock = ManualClock()
    a, b = gateway(clock), gateway(clock)
    await fail(a, "main", ErrorClass.SERVER_ERROR)
    await fail(a, "main", ErrorClass.SERVER_ERROR)
    clock.advance(31)
    probe = await a.admit("main")
    assert probe is not None
    assert await b.admit("main") is None
    await a.report(probe, Report(cancelled=True))
    again = await b.admit("main")
    assert again is not None
    assert again.probe


async def test_hot_path_costs_two_round_trips_per_request(gateway: Gateway) -> None:
    """plan and report take one round trip each; admit of an available target takes none."""
    clock = ManualClock()
    health = gateway(clock)
    await health.plan(TARGETS)  # the scripts are loaded on first use
    await health.report(Admission("main"), Report(latency=0.1))
    before = health.store.round_trips
    for _ in range(10):
        assert await health.plan(TARGETS) == Plan(("main", "fallback"))
        admission = await health.admit("main")
        assert admission == Admission("main")
        await health.report(admission, Report(latency=0.1))
    assert health.store.round_trips - before == 20


async def test_admit_asks_redis_when_a_probe_is_at_stake_or_the_record_is_old(
    gateway: Gateway,
) -> None:
    """Half-open, an early probe, or a record older than cache_seconds: admit takes one call."""
    clock = ManualClock()
    health = gateway(clock, cache_seconds=1.0)
    await health.plan(TARGETS)
    count = health.store.round_trips
    clock.advance(2)
    assert await health.admit("main") == Admission("main")
    assert health.store.round_trips == count + 1
    await fail(health, "main", ErrorClass.SERVER_ERROR)
    await fail(health, "main", ErrorClass.SERVER_ERROR)
    count = health.store.round_trips
    assert await health.admit("main") is None  # open, just read by the report: no call
    assert health.store.round_trips == count
    assert await health.admit("main", probe=True) is not None  # rule 1's early probe
    assert health.store.round_trips == count + 1


async def test_keys_stay_under_the_prefix_and_expire(
    gateway: Gateway, redis_url: str, redis_prefix: str
) -> None:
    """Records live under key_prefix + 'health:', one hash each, with a time to live."""
    clock = ManualClock()
    health = gateway(clock)
    await health.plan(TARGETS)
    await health.admit("fallback")
    assert await health.plan(TARGETS) == Plan(("main", "fallback"))
    await fail(health, "main", ErrorClass.RATE_LIMIT, retry_after=5)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        assert keys == [f"{redis_prefix}health:main"]  # reading and admitting write nothing
        assert await client.hget(keys[0], "state") == "rate_limited"
        assert 86_400 < await client.ttl(keys[0]) <= 86_406
    finally:
        await client.aclose()


async def test_from_config_reads_the_state_section(redis_url: str, redis_prefix: str) -> None:
    """from_config takes url and key_prefix from `state:`; the repr names neither URL nor key."""
    state = StateConfig(backend="redis", url=redis_url, key_prefix=redis_prefix)
    async with RedisHealth.from_config(state, CONFIG, DEPLOYMENTS, ManualClock()) as health:
        assert health.store.key("main") == f"{redis_prefix}health:main"
        assert await health.plan(TARGETS) == Plan(("main", "fallback"))
        assert repr(health) == (
            f"<RedisHealth prefix={redis_prefix!r} shared main=available, fallback=available>"
        )
        assert "sk-a" not in repr(health) + repr(await health.status())
