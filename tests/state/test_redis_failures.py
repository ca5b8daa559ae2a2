"""failover_redis_failures_total: one count per Redis call that failed, wired by the gateway.

Each test runs its own redis-server (``own_redis``) and stops it; the machine's Redis is never
touched. The local clock is a ManualClock where the retry schedule matters, so the counts are
exact without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from failover import Gateway
from failover.clock import ManualClock
from failover.config import Config, DeploymentConfig, HealthConfig, StoreConfig, config_from_dict
from failover.errors import ErrorClass
from failover.health.base import Report
from failover.mock_upstream import MockUpstream
from failover.observe import Observability
from failover.state import RedisHealth
from tests.state.conftest import OwnRedis

DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=10),
    "fallback": DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key="sk-b"),
}
TARGETS = ["main", "fallback"]


def failures(obs: Observability) -> float:
    """The value of failover_redis_failures_total in ``obs``'s exposition."""
    text = obs.metrics_text().decode()
    found = re.search(r"^failover_redis_failures_total (\S+)$", text, re.MULTILINE)
    assert found is not None, "failover_redis_failures_total is not exposed"
    return float(found.group(1))


async def test_each_failed_redis_call_counts_once(own_redis: OwnRedis) -> None:
    """Redis stopped: the call that finds it down counts, local answers do not, each retry does."""
    obs = Observability.from_config(Config(store=StoreConfig(url="none")))
    clock = ManualClock()
    health = RedisHealth(
        HealthConfig(),
        DEPLOYMENTS,
        clock,
        url=own_redis.url,
        key_prefix="failures:",
        timeout=0.5,
        retry_seconds=5.0,
        on_failure=obs.redis_failed,
    )
    try:
        await health.plan(TARGETS)
        assert failures(obs) == 0.0
        await asyncio.to_thread(own_redis.kill)
        await health.plan(TARGETS)
        assert health.degraded
        assert failures(obs) == 1.0
        admission = await health.admit("main")  # decided locally: Redis is not asked
        assert admission is not None
        await health.report(admission, Report(ErrorClass.SERVER_ERROR))
        await health.plan(TARGETS)
        assert failures(obs) == 1.0
        clock.advance(5.0)  # the retry is due: one call tries Redis, still down
        await health.plan(TARGETS)
        assert failures(obs) == 2.0
        await asyncio.to_thread(own_redis.start)
        clock.advance(5.0)
        await health.plan(TARGETS)
        assert not health.degraded
        assert failures(obs) == 2.0
    finally:
        await health.aclose()


async def test_a_failing_failure_hook_never_fails_the_call(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_failure that raises is logged; the call is still answered from the local state."""

    def explode() -> None:
        raise RuntimeError("observer bug")

    health = RedisHealth(
        HealthConfig(),
        DEPLOYMENTS,
        ManualClock(),
        url=own_redis.url,
        key_prefix="failures:",
        timeout=0.5,
        on_failure=explode,
    )
    try:
        await asyncio.to_thread(own_redis.kill)
        with caplog.at_level(logging.ERROR, logger="failover.state.redis_health"):
            plan = await health.plan(TARGETS)
        assert plan.available == ("main", "fallback")
        assert health.degraded
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
            "the Redis failure observer failed"
        ]
    finally:
        await health.aclose()


async def test_the_gateway_counts_redis_failures_while_it_answers(own_redis: OwnRedis) -> None:
    """A gateway on Redis state answers with Redis stopped, and its metric counts the failures."""
    async with MockUpstream("healthy", name="main", seed=1) as upstream:
        config = config_from_dict(
            {
                "health": {"check_on_startup": False},
                "store": {"url": "none"},
                "alerts": [],
                "state": {"backend": "redis", "url": own_redis.url, "key_prefix": "failures:"},
                "deployments": {
                    "main": {
                        "provider": "openai-compatible",
                        "model": "m",
                        "api_key": "sk-test",
                        "api_base": upstream.url,
                    }
                },
                "routes": {"intent": {"targets": ["main"]}},
            }
        )
        async with Gateway(config) as gw:
            first = await gw.chat("intent", [{"role": "user", "content": "hi"}])
            assert failures(gw.observability) == 0.0
            await asyncio.to_thread(own_redis.kill)
            second = await gw.chat("intent", [{"role": "user", "content": "hi"}])
            assert failures(gw.observability) >= 1.0
    assert (first.deployment, second.deployment) == ("main", "main")
    assert not second.degraded
