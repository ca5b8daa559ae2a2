"""Garbage in Redis: a record failover did not write never holds a deployment, every key expires.

Each case writes a foreign value straight into the health hash with redis-py (``probe=nan``, which
once kept a deployment half-open for ever; ``inf``; negative numbers; strings; a break that ends
in 1e300; an unknown state or error class; a value with a space or a terminal escape; a key that
is not a hash), with no TTL, then runs requests through :class:`RedisHealth` on the real Redis
(this test's own key prefix; time moved by a ``ManualClock``). The deployment must be admitted at
once, the backend must stay shared (not degraded), and after every operation every key under the
prefix must have a TTL. A differential test checks that the Python reading of a stored record and
the Lua scripts' agree on what is plausible.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover.clock import ManualClock
from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import DeploymentState, Plan, Report
from failover.health.machine import BreakerPolicy
from failover.state import RedisHealth, RedisHealthStore

pytestmark = pytest.mark.services

CONFIG = HealthConfig(failure_threshold=2, recovery_seconds=30, max_recovery_seconds=120)
DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=10),
}
POLICY = BreakerPolicy.from_config(CONFIG, DEPLOYMENTS["main"])
_names = itertools.count()

# The cases: the hash's fields, with "{past}" and "{soon}" standing for Redis' now - 10 and + 5.
OPEN_PAST = {"state": "circuit_open", "failures": "5", "until": "{past}", "break": "30"}
GARBAGE: dict[str, dict[str, str]] = {
    "probe-nan": {**OPEN_PAST, "probe": "nan"},
    "probe-inf": {**OPEN_PAST, "probe": "inf"},
    "probe-far-ahead": {**OPEN_PAST, "probe": "1e12"},
    "until-1e300": {**OPEN_PAST, "until": "1e300"},
    "until-inf": {**OPEN_PAST, "until": "inf"},
    "until-nan": {**OPEN_PAST, "until": "nan"},
    "until-hex": {**OPEN_PAST, "until": "0x10"},
    "break-1e300": {"state": "available", "failures": "0", "until": "0", "break": "1e300"},
    "break-negative": {"state": "available", "failures": "0", "until": "0", "break": "-1"},
    "failures-negative": {"state": "available", "failures": "-1", "until": "0", "break": "0"},
    "failures-1e300": {"state": "available", "failures": "1e300", "until": "0", "break": "0"},
    "failures-text": {"state": "available", "failures": "many", "until": "0", "break": "0"},
    "failures-fraction": {"state": "available", "failures": "1.5", "until": "0", "break": "0"},
    "state-unknown": {**OPEN_PAST, "state": "bogus"},
    "state-half-open": {**OPEN_PAST, "state": "half_open"},
    "error-unknown": {**OPEN_PAST, "error": "bogus"},
    "error-forged": {**OPEN_PAST, "error": "x\n\x1b[2JCRITICAL forged line"},
    "fields-missing": {"error": "auth"},
    "fields-foreign": {"owner": "someone else"},
    "until-negative": {"state": "available", "failures": "0", "until": "-1", "break": "0"},
}


async def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


async def write(url: str, key: str, fields: dict[str, str], now: float) -> None:
    """HSET ``fields`` (times filled in) under ``key`` as a foreign writer would: no TTL."""
    values = {k: v.format(past=repr(now - 10), soon=repr(now + 5)) for k, v in fields.items()}
    client = await raw(url)
    try:
        await client.delete(key)
        await client.hset(key, mapping=values)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def assert_every_key_expires(url: str, prefix: str) -> int:
    """Every key under ``prefix`` has a TTL (Redis ``TTL`` > 0); how many keys there are."""
    client = await raw(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        ttls = {key: await client.ttl(key) for key in keys}
    finally:
        await client.aclose()
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    return len(keys)


Make = Callable[[ManualClock], RedisHealth]


@pytest.fixture
async def make(redis_url: str, redis_prefix: str) -> AsyncIterator[Make]:
    """RedisHealth instances on this test's prefix, closed afterwards."""
    made: list[RedisHealth] = []

    def build(clock: ManualClock) -> RedisHealth:
        health = RedisHealth(
            CONFIG,
            DEPLOYMENTS,
            clock,
            url=redis_url,
            key_prefix=redis_prefix,
            time_shift=clock.now,
            timeout=2.0,
        )
        made.append(health)
        return health

    yield build
    for health in made:
        await health.aclose()


async def shared_now(url: str, clock: ManualClock) -> float:
    """Redis' clock as the scripts read it (``TIME`` plus the test's shift)."""
    client = await raw(url)
    try:
        seconds, micros = await client.time()
    finally:
        await client.aclose()
    return seconds + micros / 1e6 + clock.now()


@pytest.mark.parametrize("fields", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_garbage_reads_as_absent_and_every_key_gets_a_ttl(
    make: Make, redis_url: str, redis_prefix: str, fields: dict[str, str]
) -> None:
    """A foreign record is taken as absent: main is admitted at once, opens and recovers as a
    fresh one would, the backend stays shared, and every key has a TTL after each step."""
    clock = ManualClock()
    health = make(clock)
    key = health.store.key("main")
    await write(redis_url, key, fields, await shared_now(redis_url, clock))

    assert await health.plan(["main"]) == Plan(("main",))
    admission = await health.admit("main")
    assert admission is not None
    await health.report(admission, Report(cancelled=True))
    await assert_every_key_expires(redis_url, redis_prefix)
    for _ in range(CONFIG.failure_threshold):
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(ErrorClass.SERVER_ERROR))
        await assert_every_key_expires(redis_url, redis_prefix)
    assert await health.plan(["main"]) == Plan(
        (), probe="main", retry_after=pytest.approx(CONFIG.recovery_seconds, abs=1)
    )
    clock.advance(CONFIG.recovery_seconds + 1)
    probe = await health.admit("main")
    assert probe is not None
    assert probe.probe
    await health.report(probe, Report(latency=0.1))
    assert await assert_every_key_expires(redis_url, redis_prefix) == 1
    assert (await health.status())["main"].state is DeploymentState.AVAILABLE
    assert not health.degraded


async def test_a_key_that_is_not_a_hash_reads_as_absent(
    make: Make, redis_url: str, redis_prefix: str
) -> None:
    """A list where the hash should be: main is admitted, the backend stays shared, and the
    next update replaces it with a record that expires."""
    clock = ManualClock()
    health = make(clock)
    client = await raw(redis_url)
    try:
        await client.rpush(health.store.key("main"), "garbage")  # type: ignore[misc]
    finally:
        await client.aclose()
    assert await health.plan(["main"]) == Plan(("main",))
    admission = await health.admit("main")
    assert admission is not None
    await health.report(admission, Report(ErrorClass.SERVER_ERROR))
    assert await assert_every_key_expires(redis_url, redis_prefix) == 1
    assert (await health.status())["main"].failures == 1
    assert not health.degraded


async def test_a_plausible_record_without_a_ttl_is_kept_and_given_one(
    make: Make, redis_url: str, redis_prefix: str
) -> None:
    """A record failover could have written, minus its TTL: honoured as it is, and the first
    update that reads it (even one that changes nothing) gives the key a TTL."""
    clock = ManualClock()
    health = make(clock)
    fields = {"state": "available", "failures": "1", "until": "0", "break": "0"}
    await write(redis_url, health.store.key("main"), fields, await shared_now(redis_url, clock))
    assert (await health.status())["main"].failures == 1
    admission = await health.admit("main")
    assert admission is not None
    await health.report(admission, Report(cancelled=True))
    assert await assert_every_key_expires(redis_url, redis_prefix) == 1
    assert (await health.status())["main"].failures == 1  # cancelled: nothing changed
    assert not health.degraded


async def test_a_foreign_record_is_logged_once_and_escaped(
    make: Make, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Read again and again, a foreign record is one warning, its newline and escape shown as
    escapes, not written to the log as they are."""
    clock = ManualClock()
    health = make(clock)
    fields = {**OPEN_PAST, "error": "x\n\x1b[2JCRITICAL:forged"}  # no space: READ keeps it
    await write(redis_url, health.store.key("main"), fields, await shared_now(redis_url, clock))
    with caplog.at_level(logging.WARNING, logger="failover.state.redis_store"):
        for _ in range(5):
            assert await health.plan(["main"]) == Plan(("main",))
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(latency=0.1))  # resets the record: no new line
    (line,) = [r.getMessage() for r in caplog.records if r.name == "failover.state.redis_store"]
    assert "'main'" in line
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\\x1b" in line


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    state=st.sampled_from(
        [None, "available", "rate_limited", "circuit_open", "half_open", "not_configured", "x"]
    ),
    failures=st.sampled_from([None, "0", "3", "3.0", "3.5", "-1", "1e300", "nan", "1_0", ""]),
    until=st.sampled_from(
        [None, "0", "{past}", "{soon}", "{far}", "-1", "inf", "-inf", "nan", "0x10", " 5", "1e"]
    ),
    break_seconds=st.sampled_from([None, "0", "30", "120", "121", "-0", ".5", "5.", "+5", "!"]),
    probe=st.sampled_from([None, "", "{past}", "{soon}", "{far}", "nan", "-nan", "-1", "1e400"]),
    error=st.sampled_from([None, "", "timeout", "auth", "quota", "TIMEOUT", "a b", "\x1b[2J"]),
)
async def test_python_and_lua_agree_on_what_is_plausible(
    redis_url: str,
    redis_prefix: str,
    state: str | None,
    failures: str | None,
    until: str | None,
    break_seconds: str | None,
    probe: str | None,
    error: str | None,
) -> None:
    """Any mix of fields: READ's record checked in Python is taken as absent exactly when the
    admit script (Lua) finds it implausible and resets it."""
    store = RedisHealthStore(redis_url, key_prefix=redis_prefix, timeout=2.0)
    name = f"d{next(_names)}"
    key = store.key(name)
    policies = {name: POLICY}
    named = {
        "state": state,
        "failures": failures,
        "until": until,
        "break": break_seconds,
        "probe": probe,
        "error": error,
    }
    fields = {k: v for k, v in named.items() if v is not None}
    try:
        now, _ = await store.read([name], policies)
        if fields:
            values = {
                k: v.format(past=repr(now - 100), soon=repr(now + 5), far=repr(now + 1e7))
                for k, v in fields.items()
            }
            client = await raw(redis_url)
            try:
                await client.hset(key, mapping=values)  # type: ignore[arg-type]
            finally:
                await client.aclose()
        await store.read([name], policies)
        python_says_absent = name in store.invalid
        answer = await store.admit(name, POLICY, early=False)
        assert answer.reset == python_says_absent, fields
    finally:
        await store.aclose()
