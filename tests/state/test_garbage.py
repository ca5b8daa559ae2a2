"""Garbage in Redis: a record failover did not write never holds a deployment, every key expires.

Each case writes a foreign value straight into the health hash with redis-py (``probe=nan``, which
once kept a deployment half-open for ever; ``inf``; negative numbers; strings; a break that ends
in 1e300; an unknown state or error class; a value with a space or a terminal escape; a key that
is not a hash), with no TTL, then runs requests through :class:`RedisHealth` on the real Redis
(this test's own key prefix; time moved by a ``ManualClock``). The deployment must be admitted at
once, the backend must stay shared (not degraded), and after every operation every key under the
prefix must have a TTL. A differential test checks that the Python reading of a stored record and
the Lua scripts' agree on what is plausible; neither asks this gateway's config (a lease or break
longer than its own settings give is another gateway's valid record: test_mixed_configs.py).
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
from failover.health.machine import MAX_AHEAD, MAX_FAILURES, MAX_WAIT, BreakerPolicy
from failover.state import RedisHealth, RedisHealthStore

pytestmark = pytest.mark.services

CONFIG = HealthConfig(failure_threshold=2, recovery_seconds=30, max_recovery_seconds=120)
DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=10),
}
POLICY = BreakerPolicy.from_config(CONFIG, DEPLOYMENTS["main"])
_names = itertools.count()

# The cases: the hash's fields, with "{past}" and "{soon}" standing for Redis' now - 10 and + 5,
# "{beyond}" for a moment further ahead than any config's wait (now + MAX_AHEAD + 100).
OPEN_PAST = {"state": "circuit_open", "failures": "5", "until": "{past}", "break": "30"}
GARBAGE: dict[str, dict[str, str]] = {
    "probe-nan": {**OPEN_PAST, "probe": "nan"},
    "probe-inf": {**OPEN_PAST, "probe": "inf"},
    "probe-far-ahead": {**OPEN_PAST, "probe": "1e12"},
    "probe-beyond-the-cap": {**OPEN_PAST, "probe": "{beyond}"},
    "until-beyond-the-cap": {**OPEN_PAST, "until": "{beyond}"},
    "until-1e300": {**OPEN_PAST, "until": "1e300"},
    "until-inf": {**OPEN_PAST, "until": "inf"},
    "until-nan": {**OPEN_PAST, "until": "nan"},
    "until-hex": {**OPEN_PAST, "until": "0x10"},
    "break-1e300": {"state": "available", "failures": "0", "until": "0", "break": "1e300"},
    "break-negative": {"state": "available", "failures": "0", "until": "0", "break": "-1"},
    "break-beyond-the-cap": {**OPEN_PAST, "break": repr(MAX_WAIT + 1)},
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
    values = {
        k: v.format(past=repr(now - 10), soon=repr(now + 5), beyond=repr(now + MAX_AHEAD + 100))
        for k, v in fields.items()
    }
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


# Records this test's POLICY (breaks up to 120 s, a 10 s lease) would never write, but another
# valid config would; "{long}" is now + 3600, "{day}" now + MAX_WAIT.
OTHER_CONFIGS: dict[str, dict[str, str]] = {
    "lease-an-hour": {**OPEN_PAST, "probe": "{long}"},
    "lease-a-day": {**OPEN_PAST, "probe": "{day}"},
    "break-a-day": {**OPEN_PAST, "until": "{day}", "break": repr(MAX_WAIT)},
    "break-600": {**OPEN_PAST, "until": "{long}", "break": "600"},
}


@pytest.mark.parametrize("fields", list(OTHER_CONFIGS.values()), ids=list(OTHER_CONFIGS))
async def test_records_of_other_configs_are_honoured(
    redis_url: str, redis_prefix: str, fields: dict[str, str]
) -> None:
    """A lease or a break longer than this gateway's settings give is read as it is stored
    (Python) and kept by ADMIT and REPORT (Lua): no reset, no admission past it."""
    store = RedisHealthStore(redis_url, key_prefix=redis_prefix, timeout=2.0)
    key = store.key("main")
    try:
        now, _ = await store.read(["main"])
        values = {
            k: v.format(past=repr(now - 10), long=repr(now + 3600), day=repr(now + MAX_WAIT))
            for k, v in fields.items()
        }
        client = await raw(redis_url)
        try:
            await client.hset(key, mapping=values)  # type: ignore[arg-type]
        finally:
            await client.aclose()
        _, (record,) = await store.read(["main"])
        assert "main" not in store.invalid
        assert record.state is DeploymentState.CIRCUIT_OPEN
        assert record.failures == 5
        admitted = await store.admit("main", POLICY, early=False)
        assert not admitted.admitted
        assert not admitted.reset
        assert admitted.record == record
        reported = await store.report("main", POLICY, Report(cancelled=True), lease=None)
        assert not reported.reset
        assert reported.record == record
    finally:
        await store.aclose()
    assert await assert_every_key_expires(redis_url, redis_prefix) == 1


async def test_the_failure_count_stops_at_its_cap_in_lua(redis_url: str, redis_prefix: str) -> None:
    """Failures reported on a record already at MAX_FAILURES leave the count there, as the machine
    does, so the script never writes a record that it or the next reader would reset."""
    store = RedisHealthStore(redis_url, key_prefix=redis_prefix, timeout=2.0)
    fields = {"state": "available", "failures": str(MAX_FAILURES), "until": "0", "break": "0"}
    client = await raw(redis_url)
    try:
        await client.hset(store.key("main"), mapping=fields)  # type: ignore[arg-type]
    finally:
        await client.aclose()
    try:
        for _ in range(2):
            answer = await store.report("main", POLICY, Report(ErrorClass.TIMEOUT), lease=None)
            assert not answer.reset
            assert answer.record.failures == MAX_FAILURES
            assert answer.record.state is DeploymentState.CIRCUIT_OPEN
        _, (record,) = await store.read(["main"])
        assert record == answer.record
        assert "main" not in store.invalid
    finally:
        await store.aclose()


# Stored values for the differential test; "{in}" and "{out}" stand for just inside and just
# outside MAX_AHEAD from Redis' now, "{long}" for a lease longer than POLICY's (another config's).
UNTILS = (None, "0", "{past}", "{soon}", "{in}", "{out}", "{far}", "-1", "inf", "-inf", "nan")
UNTILS += ("0x10", " 5", "1e")
BREAKS = (None, "0", "30", "120", "121", "86400", "86401", "-0", ".5", "5.", "+5", "!")
PROBES = (None, "", "{past}", "{soon}", "{long}", "{in}", "{out}", "{far}", "nan", "-nan", "-1")
PROBES += ("1e400",)


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
    until=st.sampled_from(UNTILS),
    break_seconds=st.sampled_from(BREAKS),
    probe=st.sampled_from(PROBES),
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
        now, _ = await store.read([name])
        if fields:
            values = {
                k: v.format(
                    past=repr(now - 100),
                    soon=repr(now + 5),
                    long=repr(now + 3600),  # a lease of an hour: POLICY's lasts 10 s
                    far=repr(now + 1e7),
                    **{"in": repr(now + MAX_AHEAD - 100), "out": repr(now + MAX_AHEAD + 100)},
                )
                for k, v in fields.items()
            }
            client = await raw(redis_url)
            try:
                await client.hset(key, mapping=values)  # type: ignore[arg-type]
            finally:
                await client.aclose()
        await store.read([name])
        python_says_absent = name in store.invalid
        answer = await store.admit(name, POLICY, early=False)
        assert answer.reset == python_says_absent, fields
    finally:
        await store.aclose()
