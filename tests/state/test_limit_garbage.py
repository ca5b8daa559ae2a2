"""Garbage under a shared inbound-limit key: never a client refused for good, never a key for ever.

The budget of a client is one Redis key holding its theoretical arrival time
(:mod:`failover.server.shared_limits`). Each case puts a foreign value there with redis-py, with no
TTL, on the real Redis (this test's own prefix): the client must get its full budget back at once
(the limiter staying shared, not degraded), and the key must have a TTL afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from failover.server.limits import Rate
from failover.server.shared_limits import SharedLimiter

pytestmark = pytest.mark.services

RATE = Rate(2, 60.0)  # a burst of two, then one every 30 s
PATH, CLIENT = "/v1/chat/completions", "key-1"

# What a foreign writer may leave; "{ahead}" stands for Redis' now plus a million seconds.
GARBAGE = {
    "nan": "nan",
    "minus-nan": "-nan",
    "inf": "inf",
    "huge": "1e300",
    "far-ahead": "{ahead}",
}


@pytest.fixture
async def limiter(redis_url: str, redis_prefix: str) -> AsyncIterator[SharedLimiter]:
    shared = SharedLimiter(redis_url, key_prefix=redis_prefix, now=lambda: 0.0, timeout=2.0)
    yield shared
    await shared.aclose()


async def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


async def redis_now(client: redis.Redis) -> float:
    seconds, micros = await client.time()
    return seconds + micros / 1e6


async def assert_full_budget(limiter: SharedLimiter, key: str, url: str) -> None:
    """Two requests pass, the third waits at most one interval; the key expires."""
    assert await limiter.check(CLIENT, PATH, RATE) is None
    assert await limiter.check(CLIENT, PATH, RATE) is None
    wait = await limiter.check(CLIENT, PATH, RATE)
    assert wait is not None
    assert 0 < wait <= RATE.interval + 1
    assert not limiter.degraded
    client = await client_for(url)
    try:
        assert 0 < await client.pttl(key) <= (RATE.period + 1) * 1000
    finally:
        await client.aclose()


@pytest.mark.parametrize("value", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_foreign_value_is_a_full_budget(
    limiter: SharedLimiter, redis_url: str, redis_prefix: str, value: str
) -> None:
    """nan, inf, 1e300 or a time far ahead under the key: the client's budget is whole again
    and the key gets a TTL."""
    key = f"{redis_prefix}limit:{PATH}:{CLIENT}"
    client = await client_for(redis_url)
    try:
        await client.set(key, value.format(ahead=repr(await redis_now(client) + 1e6)))
    finally:
        await client.aclose()
    await assert_full_budget(limiter, key, redis_url)


@pytest.mark.parametrize("kind", ["list", "hash"])
async def test_a_key_of_another_type_is_a_full_budget(
    limiter: SharedLimiter, redis_url: str, redis_prefix: str, kind: str
) -> None:
    """A list or a hash where the budget should be: replaced by a budget, not an error."""
    key = f"{redis_prefix}limit:{PATH}:{CLIENT}"
    client = await client_for(redis_url)
    try:
        if kind == "list":
            await client.rpush(key, "x")  # type: ignore[misc]
        else:
            await client.hset(key, "tat", "1")  # type: ignore[misc]
    finally:
        await client.aclose()
    await assert_full_budget(limiter, key, redis_url)


async def test_a_plausible_budget_without_a_ttl_is_kept_and_given_one(
    limiter: SharedLimiter, redis_url: str, redis_prefix: str
) -> None:
    """An arrival time 45 s ahead (within one period), written without a TTL: the client waits
    as it says, and the key is given a TTL by the refusal."""
    key = f"{redis_prefix}limit:{PATH}:{CLIENT}"
    client = await client_for(redis_url)
    try:
        await client.set(key, repr(await redis_now(client) + 45))
        wait = await limiter.check(CLIENT, PATH, RATE)
        assert wait == pytest.approx(45 + RATE.interval - RATE.period, abs=1)
        assert 0 < await client.pttl(key) <= 46_000
    finally:
        await client.aclose()
    assert not limiter.degraded
