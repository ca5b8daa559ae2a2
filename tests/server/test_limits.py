"""Inbound rate limits: the GCRA decision on an injected clock, in memory, and shared in Redis."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import openai
import pytest

from failover.clock import ManualClock
from failover.config import RateLimitsConfig
from failover.mock_upstream import MockUpstream
from failover.server import LocalLimiter, Rate, SharedLimiter, gcra
from failover.server.limits import rates_for
from failover.state import RedisHealth
from tests.server.helpers import ADMIN_KEY, MESSAGES, gateway_config, running

Mocks = tuple[MockUpstream, MockUpstream]


def test_gcra_allows_a_burst_then_spaces_requests() -> None:
    """100/minute: 100 at once, the 101st waits 0.6 s; 0.6 s later one more passes."""
    rate = Rate(100, 60.0)
    tat: float | None = None
    for _ in range(100):
        decision = gcra(tat, 0.0, rate)
        assert decision.allowed
        tat = decision.tat
    refused = gcra(tat, 0.0, rate)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.6)
    assert gcra(tat, 0.6, rate).allowed


def test_gcra_never_banks_idle_time_beyond_the_burst() -> None:
    """A client idle for an hour still gets one burst, not an hour's worth."""
    rate = Rate(2, 10.0)
    tat = gcra(None, 0.0, rate).tat
    allowed = 0
    for _ in range(5):
        decision = gcra(tat, 3600.0, rate)
        if decision.allowed:
            allowed += 1
            tat = decision.tat
    assert allowed == 2


def test_local_limiter_on_a_manual_clock() -> None:
    """Budgets are per key; a refused client is told how long to wait, then passes."""
    clock = ManualClock()
    limiter = LocalLimiter()
    rate = Rate(2, 60.0)
    assert [limiter.check("a|/x", rate, clock.now()) for _ in range(3)] == [None, None, 30.0]
    assert limiter.check("b|/x", rate, clock.now()) is None
    assert limiter.check("a|/y", rate, clock.now()) is None
    clock.advance(30)
    assert limiter.check("a|/x", rate, clock.now()) is None
    assert limiter.check("a|/x", rate, clock.now()) == pytest.approx(30.0)


def test_local_limiter_memory_is_bounded() -> None:
    """Past max_keys, budgets back to full are forgotten: memory stays bounded."""
    limiter = LocalLimiter(max_keys=100)
    rate = Rate(10, 1.0)
    for number in range(1000):
        limiter.check(f"client-{number}", rate, now=number * 1.0)
    assert len(limiter) <= 100


def test_rates_per_path() -> None:
    """A path's own limit wins over the default; without config nothing is limited."""
    config = RateLimitsConfig.model_validate(
        {"default": "100/minute", "paths": {"/health": "300/minute"}}
    )
    rates = rates_for(config, ["/v1/models", "/health"])
    assert rates == {"/v1/models": Rate(100, 60.0), "/health": Rate(300, 60.0)}
    assert rates_for(None, ["/health"]) == {"/health": None}


async def test_inbound_limit_over_http(mocks: Mocks) -> None:
    """Over its limit a client gets 429 with Retry-After; other clients and probes are not hit."""
    main, fallback = mocks
    limits = {"default": "2/minute", "paths": {"/health": "1/minute"}}
    config = gateway_config(main, fallback, server={"rate_limits": limits})
    async with running(config) as gw:
        async with gw.client() as client:
            for _ in range(2):
                await client.chat.completions.create(model="intent", messages=MESSAGES)
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="intent", messages=MESSAGES)
            assert caught.value.code == "rate_limit_exceeded"
            assert caught.value.response.headers["retry-after"] == "30"
            assert "x-should-retry" not in caught.value.response.headers
            # Another path has its own budget.
            assert len((await client.models.list()).data) == 3
        async with gw.client(ADMIN_KEY) as other:  # another key, another budget
            await other.chat.completions.create(model="intent", messages=MESSAGES)
        async with aiohttp.ClientSession() as session:
            statuses = []
            for path in ("/health", "/health", "/ready", "/ready", "/ready"):
                async with session.get(f"{gw.origin}{path}") as probe:
                    statuses.append(probe.status)
    assert statuses == [200, 429, 200, 200, 200]  # /ready takes no default limit
    assert main.stats.requests == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_shared_limiter_in_redis(redis_url: str, redis_prefix: str) -> None:
    """Two gateways share one budget in Redis: what one spends, the other cannot."""
    first = SharedLimiter(redis_url, key_prefix=redis_prefix, now=lambda: 0.0)
    second = SharedLimiter(redis_url, key_prefix=redis_prefix, now=lambda: 0.0)
    rate = Rate(3, 60.0)
    try:
        answers = [await limiter.check("key_1", "/v1/x", rate) for limiter in (first, second)]
        answers.append(await first.check("key_1", "/v1/x", rate))
        refused = await second.check("key_1", "/v1/x", rate)
        other = await second.check("key_2", "/v1/x", rate)
    finally:
        await first.aclose()
        await second.aclose()
    assert answers == [None, None, None]
    assert refused is not None
    assert 19.0 < refused <= 20.0
    assert other is None
    assert not first.degraded


async def test_shared_limiter_falls_back_when_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis out of reach: decisions go on locally, one warning, no exception."""
    clock = ManualClock()
    limiter = SharedLimiter(
        f"redis://127.0.0.1:{_closed_port()}/0", key_prefix="t:", now=clock.now, timeout=0.5
    )
    rate = Rate(2, 60.0)
    try:
        with caplog.at_level(logging.WARNING, logger="failover.server.shared_limits"):
            answers = [await limiter.check("key_1", "/v1/x", rate) for _ in range(3)]
            clock.advance(5)  # the retry comes due: Redis is tried again, still down
            answers.append(await limiter.check("key_1", "/v1/x", rate))
    finally:
        await limiter.aclose()
    assert answers[:2] == [None, None]
    assert answers[2] == pytest.approx(30.0)
    assert answers[3] == pytest.approx(25.0)
    assert limiter.degraded
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].getMessage()


async def test_inbound_limit_shared_by_two_gateways(
    mocks: Mocks, redis_url: str, redis_prefix: str
) -> None:
    """With state in Redis, two gateways enforce one client budget between them."""
    main, fallback = mocks
    config = gateway_config(
        main,
        fallback,
        server={"rate_limits": {"default": "2/minute"}},
        state={"backend": "redis", "url": redis_url, "key_prefix": redis_prefix},
    )
    async with (
        running(config) as first,
        running(config) as second,
        first.client() as a,
        second.client() as b,
    ):
        await a.chat.completions.create(model="intent", messages=MESSAGES)
        await b.chat.completions.create(model="intent", messages=MESSAGES)
        results = await asyncio.gather(
            a.chat.completions.create(model="intent", messages=MESSAGES),
            b.chat.completions.create(model="intent", messages=MESSAGES),
            return_exceptions=True,
        )
    assert all(isinstance(result, openai.RateLimitError) for result in results)


async def test_inbound_limits_borrow_the_gateways_redis_client(
    mocks: Mocks, redis_url: str, redis_prefix: str
) -> None:
    """One Redis client per gateway: the shared limits use the health store's, and closing the
    app's limiter leaves it open for the gateway (which closes it last)."""
    main, fallback = mocks
    config = gateway_config(
        main,
        fallback,
        server={"rate_limits": {"default": "100/minute"}},
        state={"backend": "redis", "url": redis_url, "key_prefix": redis_prefix},
    )
    async with running(config) as served, served.client() as client:
        await client.chat.completions.create(model="intent", messages=MESSAGES)
        health = served.app.gateway.health
        assert isinstance(health, RedisHealth)
        limiter = served.app._shared
        assert limiter is not None
        assert limiter._client is health.store.client
        await limiter.aclose()  # borrowed: still usable afterwards
        assert await health.store.client.ping()
