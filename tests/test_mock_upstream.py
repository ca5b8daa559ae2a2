"""The mock upstream over real loopback HTTP: profiles, x-mock-* controls, control API, stats."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from failover.mock_upstream import PROFILES, Latency, MockUpstream, Outcome, RateBudget, override
from failover.mock_upstream.decide import decide, request_profile
from failover.mock_upstream.hostile import FORGED, KEY_AT, LIE
from failover.mock_upstream.profiles import HOSTILE_MODES, profile_to_dict

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "say hello in five words"}]}
STREAM_BODY = {**BODY, "stream": True}


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    async with MockUpstream("healthy", name="alpha", seed=1) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sdk(mock: MockUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=mock.url, api_key="sk-test", max_retries=0)
    yield client
    await client.close()


async def post(
    http: aiohttp.ClientSession,
    mock: MockUpstream,
    body: dict[str, Any] | None = None,
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    """POST a chat completion; header names are given with underscores."""
    sent = {key.replace("_", "-"): value for key, value in headers.items()}
    async with http.post(f"{mock.url}/chat/completions", json=body or BODY, headers=sent) as r:
        return r.status, dict(r.headers), await r.read()


def sse_events(raw: bytes) -> list[bytes]:
    """The data payloads of an SSE body."""
    assert raw.endswith(b"\n\n")
    events = raw[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [event[len(b"data: ") :] for event in events]


async def collect(stream: Any, received: list[str]) -> None:
    """Append each chunk's content (or "") of an SDK stream to ``received``."""
    async for chunk in stream:
        received.append(chunk.choices[0].delta.content or "")


async def read_into(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], received: bytearray
) -> None:
    """POST a streamed request and append what arrives to ``received``."""
    async with http.post(url, json=STREAM_BODY, headers=headers) as response:
        async for data in response.content.iter_any():
            received += data


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait (real time, wide bound) until ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- the OpenAI API ---------------------------------------------------------------------------


async def test_completion_parses_with_openai_sdk(sdk: openai.AsyncOpenAI) -> None:
    """A healthy answer parses with the openai SDK, names the mock and counts words as usage."""
    answer = await sdk.chat.completions.create(model="gpt-test", messages=BODY["messages"])
    assert answer.model == "gpt-test"
    assert answer.choices[0].message.content == "Hello from alpha. This is a mock answer."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 8)
    assert answer.usage.total_tokens == 13


async def test_stream_parses_with_openai_sdk_with_usage(sdk: openai.AsyncOpenAI) -> None:
    """A stream parses with the SDK, one word per chunk, and ends with a usage chunk."""
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=BODY["messages"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from alpha. This is a mock answer."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_stream_wire_format(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """Without include_usage: SSE events of chat.completion.chunk, then data: [DONE]."""
    status, headers, raw = await post(http, mock, STREAM_BODY)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert len(chunks) == 1 + 8 + 1  # role, one per word, finish
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


async def test_ids_are_unique(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """Every completion gets its own id."""
    ids = {orjson.loads((await post(http, mock))[2])["id"] for _ in range(5)}
    assert len(ids) == 5


async def test_models_and_health(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """GET /v1/models lists the mock model; /health answers with the mock's name."""
    async with http.get(f"{mock.url}/models") as response:
        assert response.status == 200
        assert [m["id"] for m in (await response.json())["data"]] == ["mock-model"]
    async with http.get(f"{mock.base_url}/health") as response:
        assert await response.json() == {"status": "ok", "name": "alpha"}


async def test_body_that_is_not_a_request(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """A body that is not JSON, or has no messages, gets an OpenAI-shaped 400."""
    async with http.post(f"{mock.url}/chat/completions", data=b"{nope") as response:
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "invalid_request_error"
    status, _, _ = await post(http, mock, {"model": "x"})
    assert status == 400
    assert mock.stats.outcomes["bad_request"] == 2


# -- the profiles -----------------------------------------------------------------------------


def test_every_profile_has_a_description_and_round_trips() -> None:
    """Each named profile describes itself and survives profile_to_dict -> override."""
    expected = {"healthy", "slow", "heavy-tail", "flaky", "rate-limited", "down", "hanging"}
    assert expected | {"malformed", "stream-cut", "hostile"} == set(PROFILES)
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.description
        data = profile_to_dict(profile)
        del data["name"]
        # override() keeps the base's name; everything else must come back equal.
        assert override(PROFILES["healthy"], data) == dataclasses.replace(profile, name="healthy")


async def test_slow_profile_does_not_answer_early(http: aiohttp.ClientSession) -> None:
    """`slow` holds the answer (2 s): a 0.3 s client timeout expires first."""
    async with MockUpstream("slow") as mock:
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.3):
                await post(http, mock)
        await eventually(lambda: mock.stats.client_disconnects == 1)
        assert mock.stats.in_flight == 0


def test_heavy_tail_distribution() -> None:
    """`heavy-tail` samples: median near 200 ms, about 2% multi-second outliers."""
    latency = PROFILES["heavy-tail"].latency
    rng = random.Random(5)
    samples = sorted(latency.sample(rng) for _ in range(20_000))
    assert 0.15 < samples[len(samples) // 2] < 0.25
    outliers = sum(1 for s in samples if s >= 2.0) / len(samples)
    assert 0.01 < outliers < 0.04
    assert max(samples) <= 6.0


async def test_heavy_tail_profile_delays_by_its_draw(http: aiohttp.ClientSession) -> None:
    """A `heavy-tail` request waits at least the latency its seeded dice drew."""
    expected = PROFILES["heavy-tail"].latency.sample(random.Random(3))
    assert 0.05 < expected < 1.0
    async with MockUpstream("heavy-tail", seed=3) as mock:
        started = time.monotonic()
        status, _, _ = await post(http, mock)
        assert status == 200
        assert time.monotonic() - started >= expected * 0.9


async def test_flaky_profile(http: aiohttp.ClientSession) -> None:
    """`flaky` fails about 20% of requests with 500 or 503, in OpenAI's error shape."""
    async with MockUpstream("flaky", seed=2) as mock:
        results = [await post(http, mock) for _ in range(200)]
        statuses = [status for status, _, _ in results]
        assert 20 <= statuses.count(500) + statuses.count(503) <= 70
        assert {500, 503} <= set(statuses) <= {200, 500, 503}
        error = orjson.loads(next(body for status, _, body in results if status == 503))
        assert error["error"]["type"] == "server_error"
        assert "mock upstream flaky" in error["error"]["message"]
        assert mock.stats.outcomes["error"] == 200 - statuses.count(200)


async def test_rate_limited_profile(http: aiohttp.ClientSession) -> None:
    """`rate-limited` answers about 30% 429 rate_limit_exceeded with both Retry-After forms."""
    async with MockUpstream("rate-limited", seed=2) as mock:
        results = [await post(http, mock) for _ in range(200)]
        limited = [(headers, body) for status, headers, body in results if status == 429]
        assert 35 <= len(limited) <= 90
        headers, body = limited[0]
        assert headers["Retry-After"] == "1"
        assert headers["retry-after-ms"] == "1000"
        assert orjson.loads(body)["error"]["code"] == "rate_limit_exceeded"
        assert mock.stats.outcomes["rate_limited"] == len(limited)


async def test_down_profile(http: aiohttp.ClientSession) -> None:
    """`down` answers 503 to every chat and models request; /health stays up."""
    async with MockUpstream("down") as mock:
        for _ in range(5):
            assert (await post(http, mock))[0] == 503
        async with http.get(f"{mock.url}/models") as response:
            assert response.status == 503
        async with http.get(f"{mock.base_url}/health") as response:
            assert response.status == 200
        assert mock.stats.statuses == {503: 6}


async def test_hanging_profile(http: aiohttp.ClientSession) -> None:
    """`hanging` never answers; the request is in flight until its client leaves."""
    async with MockUpstream("hanging") as mock:
        task = asyncio.create_task(post(http, mock))
        await eventually(lambda: mock.stats.outcomes.get("hang") == 1)
        await asyncio.sleep(0.1)
        assert not task.done()
        assert mock.stats.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: mock.stats.in_flight == 0)
        assert mock.stats.client_disconnects == 1


async def test_hanging_request_does_not_hold_up_close(http: aiohttp.ClientSession) -> None:
    """Closing the mock cuts a hanging request off quickly and counts no disconnect."""
    mock = MockUpstream("hanging")
    await mock.start()
    task = asyncio.create_task(post(http, mock))
    await eventually(lambda: mock.stats.in_flight == 1)
    started = time.monotonic()
    await mock.aclose()
    assert time.monotonic() - started < 3.0
    with pytest.raises(aiohttp.ClientError):
        await task
    assert mock.stats.client_disconnects == 0


async def test_malformed_profile(http: aiohttp.ClientSession) -> None:
    """`malformed` answers 200 with invalid JSON or a completion without choices."""
    async with MockUpstream("malformed", seed=4) as mock:
        kinds = set()
        for _ in range(20):
            status, _, body = await post(http, mock)
            assert status == 200
            try:
                kinds.add("no-choices" if "choices" not in orjson.loads(body) else "other")
            except orjson.JSONDecodeError:
                kinds.add("json")
        assert kinds == {"json", "no-choices"}
        assert mock.stats.outcomes == {"malformed": 20}


async def test_stream_cut_profile_with_sdk(http: aiohttp.ClientSession) -> None:
    """`stream-cut` drops the stream after 3 events: the SDK sees content, then an error."""
    async with MockUpstream("stream-cut", name="beta") as mock:
        client = openai.AsyncOpenAI(base_url=mock.url, api_key="sk-test", max_retries=0)
        stream = await client.chat.completions.create(
            model="m", messages=BODY["messages"], stream=True
        )
        received: list[str] = []
        with pytest.raises(openai.APIConnectionError):
            await collect(stream, received)
        await client.close()
        assert received == ["", "Hello", " from"]
        assert mock.stats.outcomes == {"stream_cut": 1}


async def test_stream_cut_profile_cuts_plain_bodies(http: aiohttp.ClientSession) -> None:
    """`stream-cut` on a non-streamed request sends half the announced body, then closes."""
    async with MockUpstream("stream-cut") as mock:
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(http, mock)
        assert mock.stats.outcomes == {"body_cut": 1}


# -- per-request controls ---------------------------------------------------------------------


async def test_latency_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-latency delays the answer by at least that long."""
    started = time.monotonic()
    status, _, _ = await post(http, mock, x_mock_latency="0.2")
    assert status == 200
    assert 0.2 <= time.monotonic() - started < 5.0


async def test_latency_distribution_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-latency takes a distribution; a bad one is a 400 naming the header."""
    status, _, _ = await post(http, mock, x_mock_latency="uniform:0.01,0.02")
    assert status == 200
    status, _, body = await post(http, mock, x_mock_latency="gamma:1,2")
    assert status == 400
    assert "latency" in orjson.loads(body)["error"]["message"]


async def test_bad_header_is_named(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """An unknown x-mock-* header, or a server-wide one, is a 400 that says which."""
    status, _, body = await post(http, mock, x_mock_colour="red")
    assert status == 400
    assert "colour" in orjson.loads(body)["error"]["message"]
    status, _, body = await post(http, mock, x_mock_rps_limit="5")
    assert status == 400
    assert "PUT /_mock/profile" in orjson.loads(body)["error"]["message"]


async def test_error_status_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-error-status fails the request; with x-mock-error-rate 0 it never does."""
    status, headers, body = await post(http, mock, x_mock_error_status="502")
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(body)["error"]["code"] == "bad_gateway"
    assert (await post(http, mock, x_mock_error_status="502", x_mock_error_rate="0"))[0] == 200


async def test_error_rate_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-error-rate 0.5 with two statuses fails about half, with both statuses."""
    statuses = [
        (await post(http, mock, x_mock_error_rate="0.5", x_mock_error_status="500,529"))[0]
        for _ in range(100)
    ]
    assert 25 <= 100 - statuses.count(200) <= 75
    assert set(statuses) == {200, 500, 529}


@pytest.mark.parametrize(
    ("code", "status", "error_type", "exception"),
    [
        ("insufficient_quota", 429, "insufficient_quota", openai.RateLimitError),
        ("context_length_exceeded", 400, "invalid_request_error", openai.BadRequestError),
        ("invalid_api_key", 401, "invalid_request_error", openai.AuthenticationError),
        ("model_not_found", 404, "invalid_request_error", openai.NotFoundError),
    ],
)
async def test_error_code_header_with_sdk(
    sdk: openai.AsyncOpenAI,
    code: str,
    status: int,
    error_type: str,
    exception: type[openai.APIStatusError],
) -> None:
    """x-mock-error-code brings its status and type; the SDK raises the matching error."""
    with pytest.raises(exception) as caught:
        await sdk.chat.completions.create(
            model="m", messages=BODY["messages"], extra_headers={"x-mock-error-code": code}
        )
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.type == error_type


async def test_error_type_and_body_headers(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-error-type sets error.type; x-mock-error-body gives text, html or empty bodies."""
    _, _, body = await post(http, mock, x_mock_error_status="500", x_mock_error_type="weird")
    assert orjson.loads(body)["error"]["type"] == "weird"
    for form, content_type in [("text", "text/plain"), ("html", "text/html")]:
        status, headers, body = await post(
            http, mock, x_mock_error_status="500", x_mock_error_body=form
        )
        assert status == 500
        assert headers["Content-Type"].startswith(content_type)
        assert b"500" in body
    status, _, body = await post(http, mock, x_mock_error_status="500", x_mock_error_body="empty")
    assert (status, body) == (500, b"")


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("seconds", {"retry-after": "2.5"}),
        ("ms", {"retry-after-ms": "2500"}),
        ("all", {"retry-after": "2.5", "retry-after-ms": "2500"}),
    ],
)
async def test_retry_after_forms(
    mock: MockUpstream, http: aiohttp.ClientSession, form: str, expected: dict[str, str]
) -> None:
    """x-mock-retry-after in seconds, milliseconds, or both, on a 429."""
    status, headers, _ = await post(
        http,
        mock,
        x_mock_error_status="429",
        x_mock_retry_after="2.5",
        x_mock_retry_after_form=form,
    )
    assert status == 429
    found = {key.lower(): value for key, value in headers.items() if "retry-after" in key.lower()}
    assert found == expected


async def test_retry_after_as_http_date(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-retry-after-form date sends an HTTP date about that far ahead."""
    status, headers, _ = await post(
        http,
        mock,
        x_mock_error_status="503",
        x_mock_retry_after="30",
        x_mock_retry_after_form="date",
    )
    assert status == 503
    when = email.utils.parsedate_to_datetime(headers["Retry-After"]).timestamp()
    assert 25 < when - time.time() < 35
    assert "retry-after-ms" not in {key.lower() for key in headers}


async def test_rate_limit_share_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-rate-limit-share 1 answers 429 rate_limit_exceeded, without Retry-After unless
    asked."""
    status, headers, body = await post(http, mock, x_mock_rate_limit_share="1")
    assert status == 429
    assert "Retry-After" not in headers
    assert orjson.loads(body)["error"]["code"] == "rate_limit_exceeded"


async def test_hang_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-hang: the request gets no answer; the next one is served normally."""
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.2):
            await post(http, mock, x_mock_hang="1")
    assert (await post(http, mock))[0] == 200
    await eventually(lambda: mock.stats.client_disconnects == 1)


async def test_drop_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-drop resets the connection without an answer."""
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(http, mock, x_mock_drop="1")
    assert mock.stats.outcomes == {"drop": 1}
    assert mock.stats.client_disconnects == 0


@pytest.mark.parametrize("mode", ["json", "no-choices", "empty-choices", "html"])
async def test_malformed_header(mock: MockUpstream, http: aiohttp.ClientSession, mode: str) -> None:
    """x-mock-malformed gives a 200 that is not a valid completion, of the mode asked."""
    status, headers, body = await post(http, mock, x_mock_malformed=mode)
    assert status == 200
    if mode in ("json", "html"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
        assert headers["Content-Type"].startswith("text/html" if mode == "html" else "app")
    else:
        assert orjson.loads(body).get("choices") in (None, [])


async def test_malformed_stream(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-malformed in a stream: one unparsable event, then [DONE]."""
    status, _, raw = await post(http, mock, STREAM_BODY, x_mock_malformed="json")
    assert status == 200
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[0])


async def test_content_type_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-content-type sends a valid completion under a wrong content type."""
    headers = {"x-mock-content-type": "text/html"}
    async with http.post(f"{mock.url}/chat/completions", json=BODY, headers=headers) as response:
        assert response.headers["Content-Type"] == "text/html"
        with pytest.raises(aiohttp.ContentTypeError):
            await response.json()
        assert orjson.loads(await response.read())["choices"]


async def test_stream_cut_header_close(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-stream-cut-after N: N events arrive, then the connection drops."""
    headers = {"x-mock-stream-cut-after": "2"}
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        await read_into(http, f"{mock.url}/chat/completions", headers, received)
    assert received.count(b"data: ") == 2
    assert b"[DONE]" not in received


async def test_stream_cut_header_eof(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-stream-cut-mode eof ends the body cleanly, still without [DONE]."""
    status, _, raw = await post(
        http, mock, STREAM_BODY, x_mock_stream_cut_after="4", x_mock_stream_cut_mode="eof"
    )
    assert status == 200
    events = sse_events(raw)
    assert len(events) == 4
    assert b"[DONE]" not in raw


async def test_stream_error_header_with_sdk(sdk: openai.AsyncOpenAI) -> None:
    """x-mock-stream-error-after N: N events, then an error event the SDK raises."""
    stream = await sdk.chat.completions.create(
        model="m",
        messages=BODY["messages"],
        stream=True,
        extra_headers={"x-mock-stream-error-after": "3", "x-mock-error-code": "overloaded"},
    )
    received: list[str] = []
    with pytest.raises(openai.APIError, match="overloaded"):
        await collect(stream, received)
    assert received == ["", "Hello", " from"]


async def test_stream_error_event_shape(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """The error event is OpenAI's data: {"error": {...}} and no [DONE] follows."""
    _, _, raw = await post(http, mock, STREAM_BODY, x_mock_stream_error_after="1")
    events = sse_events(raw)
    assert len(events) == 2
    error = orjson.loads(events[-1])["error"]
    assert (error["type"], error["code"]) == ("server_error", "server_error")
    assert mock.stats.outcomes == {"stream_error": 1}


async def test_chunk_delay_spaces_stream_events(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """x-mock-chunk-delay spaces the 11 stream events; they arrive in several reads."""
    started = time.monotonic()
    reads = 0
    url = f"{mock.url}/chat/completions"
    headers = {"x-mock-chunk-delay": "0.03"}
    async with http.post(url, json=STREAM_BODY, headers=headers) as response:
        async for _ in response.content.iter_any():
            reads += 1
    assert time.monotonic() - started >= 10 * 0.03
    assert reads >= 3


async def test_chunk_delay_slows_plain_body(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """x-mock-chunk-delay sends a plain body in 8 pieces spaced by the delay, intact."""
    started = time.monotonic()
    status, _, body = await post(http, mock, x_mock_chunk_delay="0.03")
    assert time.monotonic() - started >= 7 * 0.03
    assert status == 200
    assert orjson.loads(body)["choices"][0]["message"]["content"].startswith("Hello from alpha")


async def test_client_leaving_mid_stream_is_counted(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """A client that closes a slow stream early counts as a client disconnect."""
    url = f"{mock.url}/chat/completions"
    headers = {"x-mock-chunk-delay": "0.05"}
    async with http.post(url, json=STREAM_BODY, headers=headers) as response:
        await response.content.readany()
        response.close()
    await eventually(lambda: mock.stats.client_disconnects == 1 and mock.stats.in_flight == 0)


async def test_giant_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """x-mock-giant answers about that many bytes of content, plain and streamed."""
    _, _, body = await post(http, mock, x_mock_giant="1000000")
    completion = orjson.loads(body)
    assert len(completion["choices"][0]["message"]["content"]) == 1_000_000
    assert completion["usage"]["completion_tokens"] > 100_000
    _, _, raw = await post(http, mock, STREAM_BODY, x_mock_giant="100000")
    chunks = [orjson.loads(event) for event in sse_events(raw)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len(text) == 100_000


async def test_profile_header_is_per_request(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """x-mock-profile uses a named profile for one request; an unknown one is a 400."""
    assert (await post(http, mock, x_mock_profile="down"))[0] == 503
    assert (await post(http, mock))[0] == 200
    assert (await post(http, mock, x_mock_profile="nope"))[0] == 400


# -- hostile upstreams ------------------------------------------------------------------------

KEY = "sk-hostile-test-Q7f3k2QmZxW9pL4v"


def hostile(mode: str, **more: str) -> dict[str, str]:
    """Headers asking for hostile ``mode`` with the test key (``more``: underscores for dashes)."""
    headers = {"x-mock-hostile": mode, "Authorization": f"Bearer {KEY}"}
    headers.update({key.replace("_", "-"): value for key, value in more.items()})
    return headers


async def read_some(response: aiohttp.ClientResponse, size: int) -> bytes:
    """The first ``size`` bytes of a body (or all of a shorter one)."""
    received = bytearray()
    while len(received) < size:
        data = await response.content.readany()
        if not data:
            break
        received += data
    return bytes(received)


async def first_bytes(
    http: aiohttp.ClientSession, mock: MockUpstream, body: dict[str, Any], size: int, **more: str
) -> tuple[aiohttp.ClientResponse, bytes]:
    """POST a chat request, read ``size`` bytes of the answer, then leave (closing it)."""
    async with http.post(f"{mock.url}/chat/completions", json=body, headers=more) as response:
        received = await read_some(response, size)
        assert not response.content.at_eof()  # still coming: this answer does not end
        response.close()
    return response, received


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """The whole SSE events of a cut-off stream, parsed (the last partial one left out)."""
    whole = raw[: raw.rindex(b"\n\n")].split(b"\n\n")
    assert all(event.startswith(b"data: {") for event in whole)
    return [orjson.loads(event[len(b"data: ") :]) for event in whole]


async def left_cleanly(mock: MockUpstream, disconnects: int) -> None:
    """The mock saw the client leave and holds no request any more."""
    await eventually(
        lambda: mock.stats.in_flight == 0 and mock.stats.client_disconnects == disconnects
    )


async def test_hostile_huge_answer_is_a_valid_completion_of_that_size(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """x-mock-hostile: huge answers a valid completion of hostile_bytes of content, exact
    Content-Length; streamed, one chunk holds it all and [DONE] follows."""
    size = 3_000_001
    status, headers, body = await post(
        http, mock, None, **hostile("huge", x_mock_hostile_bytes=str(size))
    )
    assert status == 200
    assert int(headers["Content-Length"]) == len(body)
    completion = orjson.loads(body)
    assert completion["object"] == "chat.completion"
    assert len(completion["choices"][0]["message"]["content"]) == size
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] > size // 6
    _, headers, raw = await post(
        http, mock, STREAM_BODY, **hostile("huge", x_mock_hostile_bytes=str(size))
    )
    assert headers["Transfer-Encoding"] == "chunked"
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len(chunks[1]["choices"][0]["delta"]["content"]) == size
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert mock.stats.outcomes == {"hostile_huge": 2}


async def test_hostile_huge_answer_is_made_while_sent_not_held(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """A 64 MB hostile answer goes out whole while this process never holds a tenth of it."""
    size = 64 * 1024 * 1024
    tracemalloc.start()
    try:
        url = f"{mock.url}/chat/completions"
        headers = hostile("huge", x_mock_hostile_bytes=str(size))
        async with http.post(url, json=BODY, headers=headers) as response:
            announced = int(response.headers["Content-Length"])
            received = 0
            async for data in response.content.iter_chunked(64 * 1024):
                received += len(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == announced > size
    assert peak < size // 10


async def test_hostile_lying_length_announces_10_gb_and_never_ends(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """lying-length says Content-Length 10 GB and keeps sending content; streamed, empty deltas;
    the client leaving ends it."""
    response, raw = await first_bytes(http, mock, BODY, 4_000_000, **hostile("lying-length"))
    assert response.headers["Content-Length"] == str(LIE) == "10000000000"
    head = b'"message":{"role":"assistant","content":"'
    assert raw.startswith(b'{"id":"chatcmpl-alpha-')
    content = raw[raw.index(head) + len(head) :]
    assert len(content) > 3_000_000
    assert set(content.split()) == {b"lorem", b"ipsum", b"dolor", b"sit", b"amet"}
    response, raw = await first_bytes(http, mock, STREAM_BODY, 2_000_000, **hostile("lying-length"))
    assert response.headers["Content-Length"] == str(LIE)
    chunks = events_of(raw)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len(chunks) > 1000
    assert all(chunk["choices"][0]["delta"] == {"content": ""} for chunk in chunks[1:])
    await left_cleanly(mock, 2)
    assert mock.stats.outcomes == {"hostile_lying_length": 2}


async def test_hostile_endless_chunked_body_has_no_last_chunk(mock: MockUpstream) -> None:
    """endless-chunked: on the wire, a chunked body of content, chunk after chunk, no 0 chunk."""
    reader, writer = await asyncio.open_connection(mock.host, mock.port)
    body = orjson.dumps(BODY)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"x-mock-hostile: endless-chunked\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    raw = await reader.readexactly(2_000_000)
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in head
    assert b"Content-Length" not in head
    sizes = raw.split(b"\r\n")[0::2][:-1]  # size line, data, size line, data, ...
    assert len(sizes) > 10
    assert all(int(size, 16) > 0 for size in sizes)
    first = raw.split(b"\r\n")[1]
    assert first.startswith(b'{"id":"chatcmpl-alpha-')
    assert first.endswith(b'"message":{"role":"assistant","content":"')
    await left_cleanly(mock, 1)


async def test_hostile_empty_deltas_never_commit(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """empty-deltas streams the role chunk, then chunks with empty content for ever, even to a
    request that did not ask for a stream."""
    for body in (STREAM_BODY, BODY):
        response, raw = await first_bytes(http, mock, body, 2_000_000, **hostile("empty-deltas"))
        assert response.headers["Content-Type"].startswith("text/event-stream")
        chunks = events_of(raw)
        assert len(chunks) > 1000
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        for chunk in chunks[1:]:
            assert chunk["object"] == "chat.completion.chunk"
            assert chunk["choices"][0]["delta"] == {"content": ""}
            assert chunk["choices"][0]["finish_reason"] is None
        assert b"[DONE]" not in raw
    await left_cleanly(mock, 2)
    assert mock.stats.outcomes == {"hostile_empty_deltas": 2}


async def test_hostile_endless_line_has_no_newline(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """endless-line sends one `data:` line of a chunk's content that never ends."""
    response, raw = await first_bytes(http, mock, STREAM_BODY, 4_000_000, **hostile("endless-line"))
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert len(raw) >= 4_000_000
    assert raw.startswith(b'data: {"id":"chatcmpl-alpha-')
    assert b'"delta":{"content":"lorem ipsum' in raw[:1000]
    assert b"\n" not in raw
    assert b"\r" not in raw
    await left_cleanly(mock, 1)


async def test_hostile_key_echo_quotes_the_key_in_every_field(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """key-echo: a 400 (or the error status asked) whose type, code and message quote the key,
    the message with a newline, a forged CRITICAL line and an ANSI screen clear; a 401 says the
    key is wrong, a 400 that the request is."""
    status, headers, raw = await post(http, mock, None, **hostile("key-echo"))
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert b"\\nCRITICAL forged\\u001b[2J" in raw  # JSON-escaped on the wire
    error = orjson.loads(raw)["error"]
    assert KEY in error["type"]
    assert KEY in error["code"]
    assert f"Bearer {KEY}" in error["message"]
    assert error["message"].endswith(FORGED)
    assert "api key" not in error["message"].lower()  # a bad request's words, not a bad key's
    client = openai.AsyncOpenAI(
        base_url=mock.url,
        api_key=KEY,
        max_retries=0,
        default_headers={"x-mock-hostile": "key-echo", "x-mock-error-status": "401"},
    )
    with pytest.raises(openai.AuthenticationError) as refused:
        await client.chat.completions.create(model="m", messages=BODY["messages"])
    await client.close()
    assert refused.value.code == f"invalid_api_key:{KEY}"
    assert refused.value.type == f"invalid_request_error:{KEY}"
    assert "\nCRITICAL forged\x1b[2J" in refused.value.message
    assert mock.stats.statuses == {400: 1, 401: 1}


async def test_hostile_key_text_straddles_character_1000(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """key-text: a plain-text 400 whose key runs across character 1,000, then a forged line."""
    status, headers, raw = await post(http, mock, None, **hostile("key-text"))
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")
    text = raw.decode()
    start = text.index(KEY)
    assert start < KEY_AT < start + len(KEY)
    assert start == KEY_AT - len(KEY) // 2
    assert FORGED in text
    status, _, _ = await post(http, mock, None, **hostile("key-text", x_mock_error_status="403"))
    assert status == 403


async def test_hostile_drip_sends_one_byte_then_waits(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """drip sends the status line and the first byte, then nothing for its interval."""
    url = f"{mock.url}/chat/completions"
    headers = hostile("drip", x_mock_drip_interval="60")
    async with http.post(url, json=BODY, headers=headers) as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) > 300
        assert await response.content.readany() == b"{"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await response.content.readany()
        response.close()
    await left_cleanly(mock, 1)


async def test_hostile_drip_is_a_valid_answer_byte_by_byte(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """A fast drip still adds up to a valid completion (and stream), read in many pieces."""
    url = f"{mock.url}/chat/completions"
    headers = hostile("drip", x_mock_drip_interval="0.001")
    for body in (BODY, STREAM_BODY):
        reads = []
        async with http.post(url, json=body, headers=headers) as response:
            while data := await response.content.readany():
                reads.append(data)
        raw = b"".join(reads)
        assert len(reads) > len(raw) // 4
        if body is BODY:
            assert orjson.loads(raw)["choices"][0]["message"]["content"]
        else:
            assert sse_events(raw)[-1] == b"[DONE]"
            assert orjson.loads(sse_events(raw)[1])["choices"][0]["delta"]["content"]


async def test_hostile_models_list(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """GET /v1/models meets the same hostile modes: a huge model list, a key-echoing error."""
    url = f"{mock.url}/models"
    async with http.get(url, headers=hostile("huge", x_mock_hostile_bytes="500000")) as response:
        models = orjson.loads(await response.read())
    assert models["data"][0]["id"] == "mock-model"
    assert len(models["data"][0]["owned_by"]) == 500_000
    async with http.get(url, headers=hostile("key-echo")) as response:
        assert response.status == 400
        assert KEY in (await response.json())["error"]["code"]


async def test_hostile_bad_values_are_named(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """An unknown hostile mode, a size or a drip interval out of range: a 400 naming it."""
    for headers, named in (
        ({"x-mock-hostile": "nope"}, "hostile"),
        ({"x-mock-hostile": "huge", "x-mock-hostile-bytes": "0"}, "hostile_bytes"),
        ({"x-mock-hostile": "drip", "x-mock-drip-interval": "0"}, "drip_interval"),
    ):
        status, _, raw = await post(
            http, mock, None, **{k.replace("-", "_"): v for k, v in headers.items()}
        )
        assert status == 400
        assert named in orjson.loads(raw)["error"]["message"]


def test_hostile_profile_draws_every_mode() -> None:
    """The `hostile` profile meets each request with one mode, every mode in turn; the error
    modes answer 400 unless an error status is set."""
    rng = random.Random(5)
    drawn = [decide(PROFILES["hostile"], rng, over_budget=False) for _ in range(400)]
    assert {d.hostile for d in drawn} == set(HOSTILE_MODES)
    assert {d.outcome for d in drawn} == {Outcome.HOSTILE}
    assert {d.status for d in drawn if d.hostile in ("key-echo", "key-text")} == {400}
    assert {d.status for d in drawn if d.hostile not in ("key-echo", "key-text")} == {200}
    refused = override(PROFILES["hostile"], {"hostile": "key-echo", "error_status": [401]})
    assert decide(refused, rng, over_budget=False).status == 401


# -- control API and stats ---------------------------------------------------------------------


async def test_control_api_switches_profile(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """PUT /_mock/profile switches the profile at run time; GET shows it."""
    assert (await post(http, mock))[0] == 200
    url = f"{mock.base_url}/_mock/profile"
    async with http.put(url, json={"profile": "down"}) as response:
        assert response.status == 200
        assert (await response.json())["name"] == "down"
    assert (await post(http, mock))[0] == 503
    async with http.put(url, json={"profile": "healthy", "latency": "uniform:0,0.01"}) as r:
        assert (await r.json())["latency"] == "uniform:0,0.01"
    async with http.get(url) as response:
        data = await response.json()
    assert (data["name"], data["latency"], data["error_rate"]) == ("healthy", "uniform:0,0.01", 0.0)
    assert (await post(http, mock))[0] == 200


async def test_control_api_overrides_current_profile(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """PUT without a profile name changes fields of the active profile only."""
    url = f"{mock.base_url}/_mock/profile"
    async with http.put(url, json={"error_rate": 1, "error_status": [200]}) as response:
        assert response.status == 400
    async with http.put(url, json={"error_rate": 1, "error_status": [502]}) as response:
        assert response.status == 200
    assert (await post(http, mock))[0] == 502
    assert mock.profile.name == "healthy"


async def test_control_api_rejects_bad_values(
    mock: MockUpstream, http: aiohttp.ClientSession
) -> None:
    """A bad PUT is a 400 naming the field, and the active profile stays as it was."""
    url = f"{mock.base_url}/_mock/profile"
    for bad in (
        {"error_rate": 2},
        {"latency": "soon"},
        {"profile": "nope"},
        {"colour": "red"},
        {"seed": "x"},
    ):
        async with http.put(url, json=bad) as response:
            assert response.status == 400, bad
            assert (await response.json())["error"]["message"]
    async with http.put(url, data=b"[1]") as response:
        assert response.status == 400
    assert mock.profile == PROFILES["healthy"]


async def test_control_api_rps_limit(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """rps_limit set at run time: a quick burst past the budget gets 429s."""
    async with http.put(f"{mock.base_url}/_mock/profile", json={"rps_limit": 5}) as response:
        assert response.status == 200
    statuses = await asyncio.gather(*(post(http, mock) for _ in range(30)))
    ok = [status for status, _, _ in statuses].count(200)
    assert 5 <= ok <= 15
    assert mock.stats.outcomes["rate_limited"] == 30 - ok


async def test_seed_makes_faults_reproducible(http: aiohttp.ClientSession) -> None:
    """Two mocks with the same seed fail the same requests; a reseed replays the sequence."""
    runs = []
    for _ in range(2):
        async with MockUpstream("flaky", seed=42) as mock:
            runs.append([(await post(http, mock))[0] for _ in range(40)])
            mock.set_profile(seed=42)
            runs.append([(await post(http, mock))[0] for _ in range(40)])
    assert runs[0] == runs[1] == runs[2] == runs[3]
    assert set(runs[0]) != {200}


async def test_stats_endpoint(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    """GET /_mock/stats counts requests by outcome, status and path; DELETE zeroes them."""
    await post(http, mock)
    await post(http, mock, x_mock_error_status="500")
    async with http.get(f"{mock.url}/models"):
        pass
    hanging = asyncio.create_task(post(http, mock, x_mock_hang="1"))
    await eventually(lambda: mock.stats.in_flight == 1)
    async with http.get(f"{mock.base_url}/_mock/stats") as response:
        stats = await response.json()
    assert stats["requests"] == 4
    assert stats["in_flight"] == 1
    assert stats["outcomes"] == {"ok": 2, "error": 1, "hang": 1}
    assert stats["statuses"] == {"200": 2, "500": 1}
    assert stats["paths"] == {"/v1/chat/completions": 3, "/v1/models": 1}
    assert stats["name"] == "alpha"
    hanging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hanging
    await eventually(lambda: mock.stats.client_disconnects == 1)
    async with http.delete(f"{mock.base_url}/_mock/stats") as response:
        assert (await response.json())["requests"] == 0
    assert repr(mock.stats).startswith("<MockStats requests=0 in_flight=0")


# -- pure parts ---------------------------------------------------------------------------------


def test_latency_text_round_trip() -> None:
    """Latency.parse reads every form and str() writes it back."""
    for text in ("0.2", "uniform:0.1,0.5", "lognormal:0.2,0.5;outliers:0.02,2,6"):
        assert str(Latency.parse(text)) == text
    for bad in ("", "x", "uniform:1", "uniform:2,1", "-1", "lognormal:1,1;outliers:2,1,2"):
        with pytest.raises(ValueError, match=r"latency|rate|low"):
            Latency.parse(bad)


def test_rate_budget_refills() -> None:
    """The token bucket allows `limit` at once, then refills at `limit` per second."""
    budget = RateBudget(3.0, now=0.0)
    assert [budget.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.allow(0.34)
    assert not budget.allow(0.35)
    assert [budget.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert repr(budget) == "<RateBudget 3/s tokens=0.0>"


def test_request_profile_rules() -> None:
    """An error code alone fails with its own status; inside a stream error it does not."""
    flaky = PROFILES["flaky"]
    quota = request_profile(flaky, [("X-Mock-Error-Code", "insufficient_quota")], PROFILES)
    assert (quota.error_rate, quota.error_status) == (1.0, ())
    event = request_profile(
        flaky, [("x-mock-error-code", "overloaded"), ("x-mock-stream-error-after", "2")], PROFILES
    )
    assert (event.error_rate, event.stream_error_after) == (0.2, 2)
    assert request_profile(flaky, [("authorization", "Bearer x")], PROFILES) is flaky


def test_decide_precedence() -> None:
    """Drop beats hang beats hostile beats the rate budget beats errors beats malformed."""
    rng = random.Random(0)
    everything = override(
        PROFILES["healthy"],
        {"drop": True, "hang": True, "error_rate": 1, "malformed": "json"},
    )
    assert decide(everything, rng, over_budget=True).outcome is Outcome.DROP
    no_drop = override(everything, {"drop": False})
    assert decide(no_drop, rng, over_budget=True).outcome is Outcome.HANG
    with_hostile = override(no_drop, {"hang": False, "hostile": "drip"})
    assert decide(with_hostile, rng, over_budget=True).hostile == "drip"
    no_hang = override(no_drop, {"hang": False})
    assert decide(no_hang, rng, over_budget=True).status == 429
    assert decide(no_hang, rng, over_budget=False).outcome is Outcome.ERROR
    assert decide(override(no_hang, {"error_rate": 0}), rng, over_budget=False).malformed == "json"


def test_mock_repr() -> None:
    """The mock's repr names it, its profile and where it listens."""
    assert repr(MockUpstream("flaky", name="p")) == "<MockUpstream 'p' profile=flaky not started>"
    with pytest.raises(KeyError, match="unknown profile"):
        MockUpstream("nope")


# -- the command ------------------------------------------------------------------------------


def test_cli_lists_profiles() -> None:
    """`failover mock-upstream --list-profiles` prints every profile with its description."""
    out = subprocess.run(
        [sys.executable, "-m", "failover.cli", "mock-upstream", "--list-profiles"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for name, profile in PROFILES.items():
        assert f"{name:14} {profile.description}" in out


async def test_cli_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    """`failover mock-upstream --port 0` serves, then exits 0 on SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "failover.cli",
        "mock-upstream",
        "--port",
        "0",
        "--profile",
        "flaky",
        "--name",
        "cli-mock",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        async with http.post(f"{url}/chat/completions", json=BODY, headers={}) as response:
            assert response.status in (200, 500, 503)
        async with http.get(f"{url[:-3]}/_mock/profile") as response:
            assert (await response.json())["name"] == "flaky"
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = (await process.stdout.read()).decode()
            assert await process.wait() == 0
        assert "stopped" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
