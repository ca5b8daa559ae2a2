"""POST /v1/chat/completions over real loopback HTTP, with the official openai SDK as the client."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest

from failover.call import Call
from failover.errors import UpstreamError
from failover.mock_upstream import MockUpstream
from failover.types import ChatResult
from tests.server.helpers import CLIENT_KEY, MESSAGES, gateway_config, running, wait_for

Mocks = tuple[MockUpstream, MockUpstream]


async def test_completion(mocks: Mocks) -> None:
    """A plain completion comes back with failover's headers; the client's id is kept aside."""
    main, fallback = mocks
    seen: list[tuple[Call, ChatResult | None, BaseException | None]] = []
    config = gateway_config(main, fallback)
    async with (
        running(config, hook=lambda *args: seen.append(args)) as gw,
        gw.client() as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="intent",
            messages=MESSAGES,
            temperature=0,
            extra_headers={"x-request-id": "mine-1"},
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from main. This is a mock answer."
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-failover-deployment"] == "main"
    assert raw.headers["x-failover-attempts"] == "1"
    assert "x-failover-degraded" not in raw.headers
    request_id = raw.headers["x-request-id"]
    assert request_id.startswith("req_")
    assert request_id != "mine-1"
    [(call, result, error)] = seen
    assert (call.request_id, call.caller.request_id) == (request_id, "mine-1")
    assert call.caller.key_id is not None
    assert CLIENT_KEY not in repr(call)
    assert CLIENT_KEY not in repr(call.caller)
    assert result is not None
    assert result.deployment == "main"
    assert error is None
    assert fallback.stats.requests == 0


async def test_stream(mocks: Mocks) -> None:
    """A stream arrives as chunks the SDK parses, ends with [DONE], and names who answered."""
    main, fallback = mocks
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        async with client.chat.completions.with_streaming_response.create(
            model="intent", messages=MESSAGES, stream=True
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-failover-deployment"] == "main"
            assert response.headers["x-failover-attempts"] == "1"
            raw = b"".join([part async for part in response.iter_bytes()])
        stream = await client.chat.completions.create(
            model="intent", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from main. This is a mock answer."
    assert raw.startswith(b"data: {")
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_hedged_completion(mocks: Mocks) -> None:
    """A slow primary is hedged: the fallback answers first, two attempts are counted."""
    main, fallback = mocks
    main.set_profile(latency="1.0")
    config = gateway_config(main, fallback, hedge_after=0.1, deadline=5)
    async with running(config) as gw, gw.client() as client:
        started = time.perf_counter()
        raw = await client.chat.completions.with_raw_response.create(
            model="intent", messages=MESSAGES
        )
        elapsed = time.perf_counter() - started
    assert raw.headers["x-failover-deployment"] == "fallback"
    assert raw.headers["x-failover-attempts"] == "2"
    assert "Hello from fallback" in (raw.parse().choices[0].message.content or "")
    assert elapsed < 0.9  # well before the primary's 1.0 s


async def test_degraded_default_answer(mocks: Mocks) -> None:
    """When every target fails, the route's default response is served, marked degraded."""
    main, fallback = mocks
    main.set_profile("down")
    fallback.set_profile("down")
    config = gateway_config(main, fallback, default_response="INTENT_FALLBACK")
    async with running(config) as gw, gw.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="intent", messages=MESSAGES
        )
        async with client.chat.completions.with_streaming_response.create(
            model="intent", messages=MESSAGES, stream=True
        ) as streamed:
            stream_headers = streamed.headers
            body = b"".join([part async for part in streamed.iter_bytes()])
    assert raw.parse().choices[0].message.content == "INTENT_FALLBACK"
    assert raw.headers["x-failover-degraded"] == "true"
    assert raw.headers["x-failover-attempts"] == "2"
    assert "x-failover-deployment" not in raw.headers
    assert stream_headers["x-failover-degraded"] == "true"
    assert b"INTENT_FALLBACK" in body
    assert body.endswith(b"data: [DONE]\n\n")


async def test_deployment_named_directly(mocks: Mocks) -> None:
    """A deployment's own name is a model too: it answers alone."""
    main, fallback = mocks
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fallback", messages=MESSAGES
        )
    assert raw.headers["x-failover-deployment"] == "fallback"
    assert main.stats.requests == 0


async def test_stream_failing_before_first_chunk_gets_the_fallback(mocks: Mocks) -> None:
    """A primary stream cut before any content falls over to the fallback's stream."""
    main, fallback = mocks
    main.set_profile(stream_cut_after=1)  # the role chunk only, then the connection drops
    async with (
        running(gateway_config(main, fallback)) as gw,
        gw.client() as client,
        client.chat.completions.with_streaming_response.create(
            model="intent", messages=MESSAGES, stream=True
        ) as response,
    ):
        deployment = response.headers["x-failover-deployment"]
        attempts = response.headers["x-failover-attempts"]
        chunks = [chunk async for chunk in await response.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (deployment, attempts) == ("fallback", "2")
    assert text == "Hello from fallback. This is a mock answer."
    assert main.stats.outcomes.get("stream_cut") == 1


async def test_stream_failing_after_first_chunk_raises(mocks: Mocks) -> None:
    """A stream cut after its first content ends with an error event: the SDK raises."""
    main, fallback = mocks
    main.set_profile(stream_cut_after=3)  # role, two words, then the connection drops
    seen: list[tuple[Call, ChatResult | None, BaseException | None]] = []
    config = gateway_config(main, fallback)
    async with (
        running(config, hook=lambda *args: seen.append(args)) as gw,
        gw.client() as client,
    ):
        stream = await client.chat.completions.create(
            model="intent", messages=MESSAGES, stream=True
        )
        received: list[str] = []

        async def read() -> None:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(openai.APIError, match="stream failed after it started"):
            await read()
    assert "".join(received) == "Hello from"
    assert fallback.stats.requests == 0
    [(call, result, error)] = seen
    assert call.stream
    assert result is None
    assert isinstance(error, UpstreamError)


async def test_stream_error_event_after_commit_is_forwarded(mocks: Mocks) -> None:
    """An upstream error event after the commit reaches the client as an error event."""
    main, fallback = mocks
    main.set_profile(stream_error_after=2, error_code="server_error")
    async with (
        running(gateway_config(main, fallback)) as gw,
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/chat/completions",
            json={"model": "intent", "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        ) as response,
    ):
        assert response.status == 200
        body = await response.read()
    events = [event for event in body.split(b"\n\n") if event]
    assert events[-1].startswith(b'data: {"error":{')
    assert b"[DONE]" not in body


async def test_client_disconnect_cancels_the_upstream_attempt(mocks: Mocks) -> None:
    """A client that leaves mid-request cancels the attempt: the upstream sees it go."""
    main, fallback = mocks
    main.set_profile("hanging")
    seen: list[tuple[Call, ChatResult | None, BaseException | None]] = []
    config = gateway_config(main, fallback, deadline=30, timeout=30)
    async with running(config, hook=lambda *args: seen.append(args)) as gw:
        async with aiohttp.ClientSession() as session:
            request = asyncio.ensure_future(
                session.post(
                    f"{gw.url}/chat/completions",
                    json={"model": "intent", "messages": MESSAGES},
                    headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                )
            )
            assert await wait_for(lambda: main.stats.in_flight == 1)
            request.cancel()  # closes the connection to the gateway
            with pytest.raises(asyncio.CancelledError):
                await request
        left = time.perf_counter()
        assert await wait_for(lambda: main.stats.client_disconnects == 1, seconds=1.0)
        assert time.perf_counter() - left < 1.0
        assert main.stats.in_flight == 0
        assert fallback.stats.requests == 0  # the client left: nothing more is tried
        assert await wait_for(lambda: len(seen) == 1)
    [(_, result, error)] = seen
    assert result is None
    assert isinstance(error, asyncio.CancelledError)


async def test_client_disconnect_mid_stream_closes_the_upstream(mocks: Mocks) -> None:
    """A client that leaves a stream after its first chunk closes the upstream stream."""
    main, fallback = mocks
    main.set_profile(chunk_delay=0.2)
    async with running(gateway_config(main, fallback)) as gw:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{gw.url}/chat/completions",
                json={"model": "intent", "messages": MESSAGES, "stream": True},
                headers={"Authorization": f"Bearer {CLIENT_KEY}"},
            ) as response,
        ):
            assert response.status == 200
            await response.content.readuntil(b"\n\n")
            response.close()
        assert await wait_for(lambda: main.stats.client_disconnects == 1, seconds=1.0)
