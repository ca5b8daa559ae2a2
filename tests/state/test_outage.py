"""Redis down, slow or forgetful never fails a request: RedisHealth decides alone, then resumes.

Each test runs its own Redis (``own_redis``, a private redis-server on a free port), a silent TCP
server, or nothing at all; none touches the machine's Redis. Real time is needed here (sockets),
so the waits are short and the assertions are about order and counts, not durations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from failover.clock import LoopClock
from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import DeploymentState, Plan, Report
from failover.state import RedisHealth
from tests.state.conftest import OwnRedis, free_port

S = DeploymentState
CONFIG = HealthConfig(failure_threshold=2, recovery_seconds=30)
DEPLOYMENTS = {
    "main": DeploymentConfig(provider="groq", model="llama", api_key="sk-a", timeout=10),
    "fallback": DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key="sk-b"),
}
TARGETS = ["main", "fallback"]
LOGGER = "failover.state.redis_health"
# Each Redis call is bounded by the backend's timeout (0.5 s here: the machine may be loaded, and
# a spurious timeout would be a second "degraded" warning); a call slower than this is a hang.
CALL_BOUND = 3.0


def make(url: str, **options: float) -> RedisHealth:
    return RedisHealth(
        CONFIG,
        DEPLOYMENTS,
        LoopClock(),
        url=url,
        key_prefix="outage:",
        timeout=options.pop("timeout", 0.5),
        retry_seconds=options.pop("retry_seconds", 0.05),
        **options,
    )


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def request(health: RedisHealth, outcome: ErrorClass | None = None) -> Plan:
    """One request's calls (plan, admit, report), each bounded: none may hang or raise."""
    async with asyncio.timeout(CALL_BOUND):
        plan = await health.plan(TARGETS)
    for name in plan.available[:1]:
        async with asyncio.timeout(CALL_BOUND):
            admission = await health.admit(name)
        if admission is not None:
            async with asyncio.timeout(CALL_BOUND):
                await health.report(admission, Report(outcome, latency=0.01))
    return plan


async def fail_main(health: RedisHealth) -> None:
    for _ in range(CONFIG.failure_threshold):
        admission = await health.admit("main")
        assert admission is not None
        await health.report(admission, Report(ErrorClass.SERVER_ERROR))


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        # Polling: the conditions are plain attributes other tasks change, with no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_redis_killed_and_restarted_mid_traffic(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Kill Redis under load, restart it: every call returns, one warning, shared again after."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    a, b = make(own_redis.url), make(own_redis.url)
    done = {"requests": 0}
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            await asyncio.gather(*(request(a) for _ in range(8)))
            done["requests"] += 8
            await asyncio.sleep(0)

    try:
        worker = asyncio.create_task(traffic())
        await until(lambda: done["requests"] >= 80)
        await asyncio.to_thread(own_redis.kill)
        await until(lambda: a.degraded)
        served_degraded = done["requests"]
        await until(lambda: done["requests"] >= served_degraded + 80)
        await asyncio.to_thread(own_redis.start)
        await until(lambda: not a.degraded)
        recovered = done["requests"]
        await until(lambda: done["requests"] >= recovered + 80)
        stop.set()
        await worker  # re-raises a call that hung or raised

        assert len(logged(caplog, logging.WARNING)) == 1
        assert "shared health state unavailable" in logged(caplog, logging.WARNING)[0]
        assert len([m for m in logged(caplog, logging.INFO) if "reachable again" in m]) == 1
        # The restarted Redis knew no scripts: they were loaded again, and it is shared again.
        await fail_main(a)
        assert await b.plan(TARGETS) == Plan(("fallback",))
        assert not b.degraded
    finally:
        stop.set()
        await a.aclose()
        await b.aclose()


async def test_local_decisions_while_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable from the start: the same machine runs locally; one warning in all."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with make(f"redis://127.0.0.1:{free_port()}/0", retry_seconds=60) as health:
        assert await request(health) == Plan(("main", "fallback"))
        assert health.degraded
        await fail_main(health)
        assert await health.plan(TARGETS) == Plan(("fallback",))
        assert (await health.status())["main"].state is S.CIRCUIT_OPEN
        assert await health.admit("main", probe=True) is not None  # rule 1's probe, local
        assert await health.admit("main", probe=True) is None
        for _ in range(20):
            await request(health)
    assert len(logged(caplog, logging.WARNING)) == 1
    assert logged(caplog, logging.INFO)[-1].startswith("deployment 'main'")


async def test_what_was_shared_still_holds_while_degraded(own_redis: OwnRedis) -> None:
    """A break read from Redis before the outage keeps the deployment off during it."""
    async with make(own_redis.url, retry_seconds=60) as a, make(own_redis.url) as b:
        await fail_main(a)
        assert await b.plan(TARGETS) == Plan(("fallback",))
        own_redis.kill()
        assert await b.plan(TARGETS) == Plan(("fallback",))
        assert b.degraded
        assert await b.admit("main") is None
        row = (await b.status())["main"]
        assert row.state is S.CIRCUIT_OPEN
        assert row.until == pytest.approx(30, abs=2)


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts and reads but never answers: a Redis that hangs."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # until the client goes away
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_redis_that_hangs_costs_one_timeout(
    silent_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A hanging Redis: the first call waits its timeout, the next ones none; one warning."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    loop = asyncio.get_running_loop()
    url = f"redis://127.0.0.1:{silent_server}/0"
    async with make(url, timeout=0.05, retry_seconds=0.2) as health:
        started = loop.time()
        assert await health.plan(TARGETS) == Plan(("main", "fallback"))
        first = loop.time() - started
        assert health.degraded
        started = loop.time()
        for _ in range(200):
            await request(health)
        assert loop.time() - started < first * 20  # 600 calls, at most a few retries waited
        await asyncio.sleep(0.25)
        await request(health)  # this one retries Redis, which still hangs
        assert health.degraded
    assert first < CALL_BOUND
    assert len(logged(caplog, logging.WARNING)) == 1


async def test_forgotten_scripts_are_loaded_again(own_redis: OwnRedis) -> None:
    """SCRIPT FLUSH (or a restart) costs one NOSCRIPT and a SCRIPT LOAD, then EVALSHA again."""
    import redis.asyncio as redis

    async with make(own_redis.url, timeout=1.0) as health:
        assert await health.plan(TARGETS) == Plan(("main", "fallback"))
        client = redis.Redis.from_url(own_redis.url)
        try:
            await client.script_flush()
        finally:
            await client.aclose()
        count = health.store.round_trips
        assert await health.plan(TARGETS) == Plan(("main", "fallback"))
        assert health.store.round_trips == count + 3
        assert await health.plan(TARGETS) == Plan(("main", "fallback"))
        assert health.store.round_trips == count + 4
        assert not health.degraded


async def test_no_password_in_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    """The URL's password never shows in the warning, the repr or the status."""
    caplog.set_level(logging.DEBUG)
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    async with make(url) as health:
        await request(health, ErrorClass.SERVER_ERROR)
        await asyncio.sleep(0.06)
        await request(health)  # a retry, logged at debug
        seen = repr(health) + repr(health.store) + repr(await health.status())
    assert logged(caplog, logging.WARNING)
    assert "hunter2" not in caplog.text + seen
