"""Gateways running different configs on one Redis honour each other's health records.

A rolling deploy that lowers a deployment's ``timeout`` (the probe lease) or its breaks, or two
teams sharing one Redis, leaves records in Redis that this gateway's own settings would never
write: a probe lease longer than its timeout, a break longer than its ``max_recovery_seconds``.
They are valid records all the same. Here gateway A (timeout 60 s, long breaks) and gateway B
(timeout 10 s, short breaks) share one Redis (this test's own key prefix) and one ``ManualClock``:
B must see A's open circuit and A's probe, admit nothing around them, and leave A's record in
Redis as A wrote it (no reset), through its plan (Python's check of READ) and through the ADMIT
and REPORT scripts (Lua's check).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

import pytest
import redis.asyncio as redis

from failover.clock import ManualClock
from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import DeploymentState, Plan, Report
from failover.state import RedisHealth

pytestmark = pytest.mark.services

S = DeploymentState
A_HEALTH = HealthConfig(failure_threshold=2, recovery_seconds=30, max_recovery_seconds=600)
A_LONG_BREAKS = HealthConfig(failure_threshold=2, recovery_seconds=3600, max_recovery_seconds=86400)
B_HEALTH = HealthConfig(
    failure_threshold=5, recovery_seconds=5, max_recovery_seconds=20, rate_limit_cooldown=10
)
A_DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=60)
}
B_DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=10)
}

Make = Callable[..., RedisHealth]


@pytest.fixture
async def make(redis_url: str, redis_prefix: str) -> AsyncIterator[Make]:
    """RedisHealth instances on this test's prefix and the given clock; closed afterwards."""
    made: list[RedisHealth] = []

    def build(
        clock: ManualClock,
        config: HealthConfig,
        deployments: Mapping[str, DeploymentConfig],
        *,
        cache_seconds: float = 1.0,
    ) -> RedisHealth:
        health = RedisHealth(
            config,
            deployments,
            clock,
            url=redis_url,
            key_prefix=redis_prefix,
            time_shift=clock.now,
            timeout=2.0,
            cache_seconds=cache_seconds,
        )
        made.append(health)
        return health

    yield build
    for health in made:
        assert not health.degraded
        await health.aclose()


async def stored(url: str, key: str) -> tuple[dict[str, str], int]:
    """The hash under ``key`` as Redis holds it, and its TTL."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return await client.hgetall(key), await client.ttl(key)  # type: ignore[misc]
    finally:
        await client.aclose()


async def fail(health: RedisHealth, times: int) -> None:
    for _ in range(times):
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(ErrorClass.SERVER_ERROR))


async def test_a_probe_lease_longer_than_our_timeout_is_honoured(
    make: Make, redis_url: str
) -> None:
    """A's half-open probe holds a 60 s lease: B (timeout 10 s) admits nothing while it runs,
    even past its own lease length, and leaves A's record in Redis; A's probe then closes it."""
    clock = ManualClock()
    a = make(clock, A_HEALTH, A_DEPLOYMENTS)
    b = make(clock, B_HEALTH, B_DEPLOYMENTS)
    uncached = make(clock, B_HEALTH, B_DEPLOYMENTS, cache_seconds=0.0)  # every admit is ADMIT
    straggler = await b.admit("main")  # started before main went down
    assert straggler is not None
    await fail(a, A_HEALTH.failure_threshold)
    clock.advance(A_HEALTH.recovery_seconds + 1)
    probe = await a.admit("main")
    assert probe is not None
    assert probe.probe
    key = a.store.key("main")
    written, _ = await stored(redis_url, key)
    assert written["probe"]

    assert await b.plan(["main"]) == Plan((), retry_after=pytest.approx(60, abs=1))
    assert await b.admit("main") is None
    assert await b.admit("main", probe=True) is None
    assert await uncached.admit("main") is None
    clock.advance(15)  # past B's own lease length, well inside A's
    assert await uncached.admit("main") is None
    assert await uncached.admit("main", probe=True) is None
    await b.report(straggler, Report(ErrorClass.TIMEOUT))  # REPORT under B's policy
    after, ttl = await stored(redis_url, key)
    assert ttl > 0
    assert {**after, "failures": ""} == {**written, "failures": "", "error": "timeout"}
    assert int(after["failures"]) == int(written["failures"]) + 1
    assert not b.store.invalid
    assert not uncached.store.invalid

    await a.report(probe, Report(latency=0.1))
    assert await b.plan(["main"]) == Plan(("main",))
    assert (await uncached.status())["main"].state is S.AVAILABLE


async def test_a_break_longer_than_our_longest_is_honoured(make: Make, redis_url: str) -> None:
    """A opens main for an hour; B, whose breaks never pass 20 s, keeps main closed for that
    hour, admits only its half-open probe after it, and never resets A's record."""
    clock = ManualClock()
    a = make(clock, A_LONG_BREAKS, A_DEPLOYMENTS)
    b = make(clock, B_HEALTH, B_DEPLOYMENTS, cache_seconds=0.0)
    await fail(a, A_LONG_BREAKS.failure_threshold)
    key = a.store.key("main")
    written, _ = await stored(redis_url, key)
    assert float(written["break"]) == A_LONG_BREAKS.recovery_seconds

    assert await b.plan(["main"]) == Plan((), probe="main", retry_after=pytest.approx(3600, abs=1))
    assert await b.admit("main") is None
    clock.advance(B_HEALTH.max_recovery_seconds + 1)
    assert await b.admit("main") is None
    assert (await b.status())["main"].state is S.CIRCUIT_OPEN
    assert (await stored(redis_url, key))[0] == written
    assert not b.store.invalid

    clock.advance(A_LONG_BREAKS.recovery_seconds)
    probe = await b.admit("main")
    assert probe is not None
    assert probe.probe
    assert await b.admit("main") is None  # one probe at a time
    await b.report(probe, Report(ErrorClass.SERVER_ERROR))
    assert (await a.status())["main"].state is S.CIRCUIT_OPEN
