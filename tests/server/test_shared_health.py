"""Two `failover serve` processes sharing one Redis share their view of provider health.

Each test runs gateways A and B as separate processes on one Redis key prefix of its own, in front
of the test's mock upstreams, and counts what reaches the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from failover.mock_upstream import MockUpstream
from tests.server.helpers import CLIENT_KEY, MESSAGES, gateway_config, serve_process, write_config

Mocks = tuple[MockUpstream, MockUpstream]
pytestmark = pytest.mark.slow

BODY = orjson.dumps({"model": "intent", "messages": MESSAGES})


@contextlib.asynccontextmanager
async def _two_gateways(
    mocks: Mocks, tmp_path: Path, redis_url: str, prefix: str, **health: Any
) -> AsyncIterator[tuple[str, str]]:
    state = {"backend": "redis", "url": redis_url, "key_prefix": prefix}
    config = gateway_config(*mocks, state=state)
    config["health"] = {"check_on_startup": False, **health}
    path = write_config(tmp_path, config)
    async with serve_process(path) as (_, a), serve_process(path) as (_, b):
        yield a, b


async def _ask(session: aiohttp.ClientSession, origin: str) -> str:
    """One chat through a gateway; the deployment that answered."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    async with session.post(f"{origin}/v1/chat/completions", data=BODY, headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        return answer.headers["x-failover-deployment"]


async def test_circuit_opened_by_a_is_skipped_by_b(
    mocks: Mocks, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """Failures through gateway A open the circuit; gateway B then never calls that deployment."""
    main = mocks[0]
    main.set_profile("down")
    async with (
        _two_gateways(mocks, tmp_path, redis_url, redis_prefix, failure_threshold=2) as (a, b),
        aiohttp.ClientSession() as session,
    ):
        assert [await _ask(session, a) for _ in range(2)] == ["fallback", "fallback"]
        assert main.stats.requests == 2
        assert [await _ask(session, b) for _ in range(3)] == ["fallback"] * 3
    assert main.stats.requests == 2  # B skipped main: the circuit A opened is open for B


async def test_rate_limit_seen_by_a_makes_b_wait(
    mocks: Mocks, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """A 429 with Retry-After answered to A cools the deployment down for B too."""
    main = mocks[0]
    main.set_profile(rate_limit_share=1.0, retry_after=30)
    async with (
        _two_gateways(mocks, tmp_path, redis_url, redis_prefix) as (a, b),
        aiohttp.ClientSession() as session,
    ):
        assert await _ask(session, a) == "fallback"
        assert main.stats.requests == 1
        assert [await _ask(session, b) for _ in range(3)] == ["fallback"] * 3
    assert main.stats.requests == 1


async def test_one_half_open_probe_across_both(
    mocks: Mocks, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """When the break ends, one probe reaches the upstream across both gateways, not one each."""
    main = mocks[0]
    main.set_profile("down")
    async with (
        _two_gateways(
            mocks, tmp_path, redis_url, redis_prefix, failure_threshold=1, recovery_seconds=1
        ) as (a, b),
        aiohttp.ClientSession() as session,
    ):
        assert await _ask(session, a) == "fallback"  # opens the circuit
        assert main.stats.requests == 1
        main.set_profile("healthy", latency="1.5")  # back, but the probe takes a while
        await asyncio.sleep(1.3)  # past the 1 s break: half-open
        answers = await asyncio.gather(*(_ask(session, gw) for gw in (a, b) * 4))
    assert main.stats.requests == 2  # the opening failure and exactly one probe
    assert answers.count("main") <= 1
    assert answers.count("fallback") >= 7
