"""The Gateway end to end: real loopback HTTP to `MockUpstream` servers, real time, wide bounds.

The exact timings of SPEC's tables are checked on virtual time in tests/engine; here a few of the
same scenarios run for real, asserting outcomes and ordering with generous margins.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from failover import AllTargetsFailed, Gateway, UnknownModel, UpstreamError
from failover.mock_upstream import MockUpstream

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def mocks() -> AsyncIterator[tuple[MockUpstream, MockUpstream]]:
    async with (
        MockUpstream("healthy", name="main", seed=1) as main,
        MockUpstream("healthy", name="fallback", seed=2) as fallback,
    ):
        yield main, fallback


def _config(main: MockUpstream, fallback: MockUpstream, **route: Any) -> dict[str, Any]:
    deployment = {"provider": "openai-compatible", "api_key": "sk-test-123", "max_retries": 0}
    return {
        "store": {"url": "none"},
        "health": {"check_on_startup": False},
        "deployments": {
            "main": {**deployment, "model": "m", "api_base": main.url, "timeout": 5},
            "fallback": {**deployment, "model": "f", "api_base": fallback.url, "timeout": 5},
        },
        "routes": {"intent": {"targets": ["main", "fallback"], **route}},
    }


def _outcomes(result_attempts: list[Any]) -> list[tuple[str, str]]:
    return [(a.deployment, a.outcome) for a in result_attempts]


async def test_main_answers(mocks: tuple[MockUpstream, MockUpstream]) -> None:
    """A healthy primary answers alone (000_* case 2.1)."""
    main, fallback = mocks
    async with Gateway.from_dict(_config(main, fallback, hedge_after=1.0)) as gw:
        result = await gw.chat("intent", MESSAGES)
    assert result.deployment == "main"
    assert "Hello from main" in result.text
    assert result.usage.completion_tokens > 0
    assert _outcomes(result.attempts) == [("main", "success")]
    assert fallback.stats.requests == 0


async def test_hedge_wins_and_loser_finishes_in_background(
    mocks: tuple[MockUpstream, MockUpstream],
) -> None:
    """A slow primary is hedged; the fallback wins; the primary completes for the record (6.2)."""
    main, fallback = mocks
    main.set_profile(latency="1.2")
    config = _config(main, fallback, hedge_after=0.2, deadline=5, finish_losers=4)
    async with Gateway.from_dict(config) as gw:
        started = time.perf_counter()
        result = await gw.chat("intent", MESSAGES)
        answered = time.perf_counter() - started
        assert result.deployment == "fallback"
        assert answered < 1.0  # well before the primary's 1.2 s
        assert result.attempts[0].outcome == "running"
        for _ in range(100):
            if result.attempts[0].outcome != "running":
                break
            await asyncio.sleep(0.05)
    assert _outcomes(result.attempts) == [("main", "lost_completed"), ("fallback", "success")]
    assert result.attempts[1].hedge
    main_end, fallback_end = result.attempts[0].end, result.attempts[1].end
    assert main_end is not None
    assert fallback_end is not None
    assert main_end > fallback_end


async def test_failure_moves_on_at_once(mocks: tuple[MockUpstream, MockUpstream]) -> None:
    """A primary 500 starts the fallback at once, not after hedge_after (000_* case 2.3)."""
    main, fallback = mocks
    main.set_profile("down")
    async with Gateway.from_dict(_config(main, fallback, hedge_after=3.0, deadline=5)) as gw:
        started = time.perf_counter()
        result = await gw.chat("intent", MESSAGES)
        assert time.perf_counter() - started < 2.0
    assert _outcomes(result.attempts) == [("main", "server_error"), ("fallback", "success")]
    assert result.attempts[0].status == 503


async def test_both_hang_gives_default_at_deadline(
    mocks: tuple[MockUpstream, MockUpstream],
) -> None:
    """Both hanging: the default answer at the deadline, both attempts cancelled (case 4.1)."""
    main, fallback = mocks
    main.set_profile("hanging")
    fallback.set_profile("hanging")
    config = _config(
        main, fallback, hedge_after=0.1, deadline=0.6, default_response="INTENT_FALLBACK"
    )
    async with Gateway.from_dict(config) as gw:
        started = time.perf_counter()
        result = await gw.chat("intent", MESSAGES)
        elapsed = time.perf_counter() - started
    assert 0.55 <= elapsed < 2.0
    assert result.degraded
    assert result.text == "INTENT_FALLBACK"
    assert result.deployment is None
    assert _outcomes(result.attempts) == [("main", "cancelled"), ("fallback", "cancelled")]
    for _ in range(100):  # the mocks see the connections close
        if main.stats.client_disconnects and fallback.stats.client_disconnects:
            break
        await asyncio.sleep(0.02)
    assert main.stats.client_disconnects == 1
    assert fallback.stats.client_disconnects == 1


async def test_auth_error_is_not_retried(mocks: tuple[MockUpstream, MockUpstream]) -> None:
    """A 401 goes to the next target and is never retried on its deployment (001_*)."""
    main, fallback = mocks
    main.set_profile(error_rate=1.0, error_code="invalid_api_key", error_status="401")
    config = _config(main, fallback)
    config["deployments"]["main"]["max_retries"] = 3
    async with Gateway.from_dict(config) as gw:
        result = await gw.chat("intent", MESSAGES)
        second = await gw.chat("intent", MESSAGES)
    assert _outcomes(result.attempts) == [("main", "auth"), ("fallback", "success")]
    # The circuit opened at once: the next request skips main without calling it.
    assert _outcomes(second.attempts) == [("fallback", "success")]
    assert main.stats.requests == 1


async def test_all_fail_without_default_raises(
    mocks: tuple[MockUpstream, MockUpstream],
) -> None:
    """Every target failing with no default raises AllTargetsFailed with each error."""
    main, fallback = mocks
    main.set_profile("down")
    fallback.set_profile("down")
    async with Gateway.from_dict(_config(main, fallback)) as gw:
        with pytest.raises(AllTargetsFailed) as caught:
            await gw.chat("intent", MESSAGES)
    errors = caught.value.errors
    assert [e.deployment for e in errors if isinstance(e, UpstreamError)] == ["main", "fallback"]
    assert "sk-test-123" not in str(caught.value)


async def test_stream_fails_over_before_first_chunk(
    mocks: tuple[MockUpstream, MockUpstream],
) -> None:
    """A primary that fails before its first chunk gives the fallback's stream."""
    main, fallback = mocks
    main.set_profile("down")
    async with Gateway.from_dict(_config(main, fallback)) as gw:
        chunks = [chunk async for chunk in gw.stream("intent", MESSAGES)]
    text = "".join(
        (c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices")
    )
    assert text.startswith("Hello from fallback")


async def test_stream_cut_after_commit_raises(
    mocks: tuple[MockUpstream, MockUpstream],
) -> None:
    """A stream cut after its first content chunk raises from the iterator, never ends clean."""
    main, fallback = mocks
    main.set_profile("stream-cut")
    received: list[dict[str, Any]] = []

    async def read(gw: Gateway) -> None:
        async for chunk in gw.stream("intent", MESSAGES):
            received.append(chunk)

    async with Gateway.from_dict(_config(main, fallback)) as gw:
        with pytest.raises(UpstreamError):
            await read(gw)
    assert received  # it had committed: content reached the caller before the cut
    assert fallback.stats.requests == 0


async def test_unknown_model(mocks: tuple[MockUpstream, MockUpstream]) -> None:
    """Asking for a model that is neither a route nor a deployment names the known ones."""
    main, fallback = mocks
    async with Gateway.from_dict(_config(main, fallback)) as gw:
        with pytest.raises(UnknownModel, match="known: fallback, intent, main"):
            await gw.chat("gpt5", MESSAGES)


async def test_deployment_by_name(mocks: tuple[MockUpstream, MockUpstream]) -> None:
    """A deployment's own name is a route of that deployment alone."""
    main, fallback = mocks
    async with Gateway.from_dict(_config(main, fallback)) as gw:
        result = await gw.chat("fallback", MESSAGES)
    assert result.deployment == "fallback"
    assert main.stats.requests == 0


async def test_caller_cancellation_propagates(
    mocks: tuple[MockUpstream, MockUpstream],
) -> None:
    """Cancelling the caller cancels every attempt and re-raises, leaving no task (case 8.1)."""
    main, fallback = mocks
    main.set_profile("hanging")
    fallback.set_profile("hanging")
    config = _config(main, fallback, hedge_after=0.05, default_response="X")
    async with Gateway.from_dict(config) as gw:
        task = asyncio.create_task(gw.chat("intent", MESSAGES))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t for t in others if "failover" in repr(t.get_coro())]
    for _ in range(100):
        if main.stats.client_disconnects and fallback.stats.client_disconnects:
            break
        await asyncio.sleep(0.02)
    assert (main.stats.client_disconnects, fallback.stats.client_disconnects) == (1, 1)


def test_chat_sync() -> None:
    """chat_sync answers from code without an event loop."""

    async def start() -> MockUpstream:
        mock = MockUpstream("healthy", name="solo")
        await mock.start()
        return mock

    runner = asyncio.Runner()
    mock = runner.run(start())
    try:
        config = {
            "store": {"url": "none"},
            "deployments": {
                "solo": {
                    "provider": "openai-compatible",
                    "model": "m",
                    "api_base": mock.url,
                    "api_key": "k",
                }
            },
        }
        # The mock serves from the runner's loop; the gateway's private loop runs in a thread.
        result = runner.run(asyncio.to_thread(_sync_chat, config))
        assert result == "solo"
    finally:
        runner.run(mock.aclose())
        runner.close()


def _sync_chat(config: dict[str, Any]) -> str | None:
    gw = Gateway.from_dict(config)
    try:
        return gw.chat_sync("solo", MESSAGES).deployment
    finally:
        gw.close_sync()


async def test_two_gateways_share_health_through_redis(
    mocks: tuple[MockUpstream, MockUpstream], redis_url: str, redis_prefix: str
) -> None:
    """A circuit opened through gateway A is skipped by gateway B sharing the same Redis."""
    main, fallback = mocks
    main.set_profile(error_rate=1.0, error_code="invalid_api_key", error_status="401")
    config = _config(main, fallback)
    config["state"] = {"backend": "redis", "url": redis_url, "key_prefix": redis_prefix}
    async with Gateway.from_dict(config) as a, Gateway.from_dict(config) as b:
        first = await a.chat("intent", MESSAGES)
        second = await b.chat("intent", MESSAGES)
    assert _outcomes(first.attempts) == [("main", "auth"), ("fallback", "success")]
    assert _outcomes(second.attempts) == [("fallback", "success")]
    assert main.stats.requests == 1


async def test_requests_are_recorded(
    mocks: tuple[MockUpstream, MockUpstream], tmp_path: Any
) -> None:
    """Every chat and stream through the gateway lands in its request log, attempts included."""
    main, fallback = mocks
    main.set_profile("down")
    config = _config(main, fallback)
    config["store"] = {"url": f"sqlite:///{tmp_path / 'log.db'}"}
    async with Gateway.from_dict(config) as gw:
        result = await gw.chat("intent", MESSAGES)
        chunks = [chunk async for chunk in gw.stream("intent", MESSAGES, request_id="req_s")]
        assert chunks
        chat_record = await gw.observability.get_record(result.request_id)
        stream_record = await gw.observability.get_record("req_s")
    assert chat_record is not None
    assert stream_record is not None
    for record in (chat_record, stream_record):
        assert record["route"] == "intent"
        assert record["deployment"] == "fallback"
        assert [(a["deployment"], a["outcome"]) for a in record["attempts"]] == [
            ("main", "server_error"),
            ("fallback", "success"),
        ]
    assert stream_record["stream"] is True
    assert chat_record["completion_tokens"] > 0


def test_request_ids_are_unique_and_not_shared_with_a_forked_child() -> None:
    """Ids sort by time and come with CSPRNG bytes from a pool; a forked child draws its own,
    never the parent's."""
    from failover.gateway import RequestIds

    ids = RequestIds()
    drawn = [ids() for _ in range(1000)]  # several refills of the pool
    assert len(set(drawn)) == 1000
    assert all(len(i) == 32 and i.startswith("req_") for i in drawn)
    stamps = [int(i[4:16], 16) for i in drawn]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] / 1000 - time.time()) < 60
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next id, then out at once
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    childs = os.read(read, 100).decode()
    os.close(read)
    assert childs.startswith("req_")
    assert childs != ids()
