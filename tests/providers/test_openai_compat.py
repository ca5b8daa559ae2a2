"""The OpenAI-compatible family against a fake speaking OpenAI's wire format on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from failover.errors import (
    ErrorClass,
    MalformedResponse,
    UpstreamConnectionError,
    UpstreamStatusError,
)
from failover.providers import HttpClient, OpenAICompatProvider
from failover.types import ChatRequest
from tests.providers.conftest import (
    FakeUpstream,
    deployment,
    drain,
    json_answer,
    raw_answer,
    sse_answer,
    sse_data,
)
from tests.providers.shapes import KEY, OPENAI_CASES, Case

HELLO = ChatRequest(messages=[{"role": "user", "content": "hi"}], params={"temperature": 0})


def completion_body(**message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello", **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }


def stream_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def provider(upstream: FakeUpstream, http: HttpClient, **kw: Any) -> OpenAICompatProvider:
    return OpenAICompatProvider(deployment(kw.pop("kind", "groq"), upstream.url, **kw), http)


async def test_plain_completion_sends_openai_request(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """POST /chat/completions with Bearer auth and params + model + messages; answer as is."""
    upstream.handler = json_answer(completion_body())
    result = await provider(upstream, http).complete(HELLO)
    assert result["choices"][0]["message"]["content"] == "hello"
    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "temperature": 0,
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
    }


async def test_no_key_sends_no_authorization(upstream: FakeUpstream, http: HttpClient) -> None:
    """A keyless deployment (local Ollama) sends no Authorization header."""
    upstream.handler = json_answer(completion_body())
    await provider(upstream, http, kind="ollama", key=None).complete(HELLO)
    assert "Authorization" not in upstream.last.headers


async def test_multi_turn_with_system_and_usage(upstream: FakeUpstream, http: HttpClient) -> None:
    """Messages go out verbatim in order; usage comes back with the completion."""
    upstream.handler = json_answer(completion_body())
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    request = ChatRequest(messages=messages, params={"max_tokens": 5, "stream": False})
    result = await provider(upstream, http).complete(request)
    sent = upstream.last.json()
    assert sent["messages"] == messages
    assert sent["max_tokens"] == 5
    assert "stream" not in sent
    assert result["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


async def test_tool_calls_round_trip(upstream: FakeUpstream, http: HttpClient) -> None:
    """Tools go out as given; a tool-call answer is a valid completion (content null)."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    upstream.handler = json_answer(completion_body(content=None, tool_calls=[call]))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    request = ChatRequest(messages=HELLO.messages, params={"tools": tools, "tool_choice": "auto"})
    result = await provider(upstream, http).complete(request)
    assert result["choices"][0]["message"]["tool_calls"] == [call]
    assert upstream.last.json()["tools"] == tools


async def test_stream_yields_chunks_until_done(upstream: FakeUpstream, http: HttpClient) -> None:
    """A stream asks for usage, yields every chunk, and stops at [DONE]."""
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chunks = [
        stream_chunk({"role": "assistant", "content": ""}),
        stream_chunk({"content": "hel"}),
        stream_chunk({"content": "lo"}),
        stream_chunk({}, "stop"),
        {**stream_chunk({}), "choices": [], "usage": usage},
    ]
    upstream.handler = sse_answer([": keep-alive\n\n", *sse_data(*chunks), "data: [DONE]\n\n"])
    request = ChatRequest(messages=HELLO.messages, params={"stream_options": {"x": 1}})
    got = [c async for c in provider(upstream, http).stream(request)]
    assert got == chunks
    sent = upstream.last.json()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"x": 1, "include_usage": True}
    assert upstream.last.headers["Accept"] == "text/event-stream"


async def test_stream_tool_call_deltas_pass_through(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """Tool-call deltas reach the caller unchanged."""
    delta = {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}}]}
    chunks = [stream_chunk(delta), stream_chunk({}, "tool_calls")]
    upstream.handler = sse_answer([*sse_data(*chunks), "data: [DONE]\n\n"])
    got = [c async for c in provider(upstream, http).stream(HELLO)]
    assert got[0]["choices"][0]["delta"] == delta


async def test_stream_cut_without_done(upstream: FakeUpstream, http: HttpClient) -> None:
    """A stream that ends without [DONE] is a connection error, never a silent end."""
    upstream.handler = sse_answer(sse_data(stream_chunk({"content": "par"})))
    got, error = await drain(provider(upstream, http).stream(HELLO))
    assert len(got) == 1
    assert isinstance(error, UpstreamConnectionError)
    assert "stream cut" in error.message


@pytest.mark.parametrize(
    "frames",
    [
        sse_data({"error": {"message": "The server had an error", "type": "server_error"}}),
        sse_data({"error": {"message": "Overloaded", "code": 502}}, event="error"),
    ],
    ids=["data-error-object", "event-error"],
)
async def test_error_event_in_stream(
    upstream: FakeUpstream, http: HttpClient, frames: list[str]
) -> None:
    """An error object inside the stream is raised, classed."""
    upstream.handler = sse_answer([*sse_data(stream_chunk({"role": "assistant"})), *frames])
    stream = provider(upstream, http).stream(HELLO)
    assert (await anext(stream))["choices"][0]["delta"] == {"role": "assistant"}
    with pytest.raises(UpstreamStatusError) as caught:
        await anext(stream)
    assert caught.value.error_class is ErrorClass.SERVER_ERROR


@pytest.mark.parametrize("case", OPENAI_CASES, ids=[c.id for c in OPENAI_CASES])
async def test_error_statuses(upstream: FakeUpstream, http: HttpClient, case: Case) -> None:
    """Each real OpenAI-family error answer becomes its class, with Retry-After, key-free."""
    await upstream.assert_complete_raises(provider(upstream, http), HELLO, case, "groq-test")


async def test_error_status_on_stream(upstream: FakeUpstream, http: HttpClient) -> None:
    """A stream request answered with an error status raises before any chunk."""
    upstream.handler = json_answer({"error": {"message": "slow", "type": "requests"}}, 429)
    with pytest.raises(UpstreamStatusError) as caught:
        await anext(provider(upstream, http).stream(HELLO))
    assert caught.value.error_class is ErrorClass.RATE_LIMIT


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b'{"id": "x", "choices": []}', "application/json", "no choice with a message"),
        (b'{"id": "x", "choices": [{"index": 0}]}', "application/json", "no choice"),
        (b"[1, 2]", "application/json", "not a JSON object"),
        (b'{"choices": [', "application/json", "not valid JSON"),
        (b"<html>hello</html>", "text/html", "content type 'text/html'"),
    ],
    ids=["empty-choices", "no-message", "not-object", "invalid-json", "wrong-content-type"],
)
async def test_malformed_answers(
    upstream: FakeUpstream, http: HttpClient, body: bytes, content_type: str, match: str
) -> None:
    """A 200 that is not a valid completion (SPEC rule 10) is a MalformedResponse."""
    upstream.handler = raw_answer(body, content_type)
    with pytest.raises(MalformedResponse, match=match) as caught:
        await provider(upstream, http).complete(HELLO)
    assert caught.value.error_class is ErrorClass.MALFORMED


async def test_200_with_error_object_is_classed(upstream: FakeUpstream, http: HttpClient) -> None:
    """OpenRouter-style 200 carrying an error object is that error."""
    upstream.handler = json_answer({"error": {"message": "Rate limit exceeded", "code": 429}})
    with pytest.raises(UpstreamStatusError) as caught:
        await provider(upstream, http, kind="openrouter").complete(HELLO)
    assert caught.value.error_class is ErrorClass.RATE_LIMIT


async def test_stream_wrong_content_type_is_malformed(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """A stream answered with JSON instead of an event stream is malformed."""
    upstream.handler = json_answer(completion_body())
    with pytest.raises(MalformedResponse, match="event stream"):
        await anext(provider(upstream, http).stream(HELLO))


async def test_probe_lists_models(upstream: FakeUpstream, http: HttpClient) -> None:
    """probe() is GET /models with the key; an error answer raises classed."""
    await upstream.probe_request(provider(upstream, http), {"object": "list", "data": []})
    upstream.handler = json_answer(
        {"error": {"message": "bad key", "code": "invalid_api_key"}}, 401
    )
    with pytest.raises(UpstreamStatusError) as caught:
        await provider(upstream, http).probe()
    assert caught.value.error_class is ErrorClass.AUTH
