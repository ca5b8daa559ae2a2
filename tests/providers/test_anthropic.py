"""The Anthropic adapter against a fake speaking the Messages API on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from failover.errors import ErrorClass, MalformedResponse, UpstreamConnectionError, UpstreamError
from failover.providers import AnthropicProvider, HttpClient
from failover.types import ChatRequest
from tests.providers.conftest import (
    FakeUpstream,
    deployment,
    drain,
    json_answer,
    sse_answer,
    sse_named,
)
from tests.providers.shapes import ANTHROPIC_CASES, KEY, Case

HELLO = ChatRequest(messages=[{"role": "user", "content": "hi"}])


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "output_tokens": 7,
        },
    }


def provider(upstream: FakeUpstream, http: HttpClient) -> AnthropicProvider:
    return AnthropicProvider(deployment("anthropic", upstream.url, model="claude-x"), http)


async def test_plain_completion(upstream: FakeUpstream, http: HttpClient) -> None:
    """POST /messages with x-api-key and version; the answer becomes a chat.completion."""
    upstream.handler = json_answer(message([{"type": "text", "text": "Hello!"}]))
    result = await provider(upstream, http).complete(HELLO)
    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/messages")
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert sent.json() == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 4096,
    }
    assert result["object"] == "chat.completion"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    # Cache reads count as prompt tokens, as OpenAI counts cached tokens.
    assert result["usage"] == {"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22}


async def test_multi_turn_with_system_translation(upstream: FakeUpstream, http: HttpClient) -> None:
    """System goes to ``system``; same-role turns merge; sampling params are translated."""
    upstream.handler = json_answer(message([{"type": "text", "text": "ok"}], "max_tokens"))
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        params={
            "max_completion_tokens": 50,
            "temperature": 1.5,
            "top_p": 0.9,
            "stop": "END",
            "user": "u-1",
            "frequency_penalty": 0.5,
        },
    )
    result = await provider(upstream, http).complete(request)
    assert upstream.last.json() == {
        "model": "claude-x",
        "system": "Be brief.\n\nNo emoji.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ],
        "max_tokens": 50,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
    }
    assert result["choices"][0]["finish_reason"] == "length"


async def test_tool_calls_and_results(upstream: FakeUpstream, http: HttpClient) -> None:
    """Tools, tool_choice, tool calls and tool results translate both ways."""
    upstream.handler = json_answer(
        message(
            [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Oslo"}},
            ],
            "tool_use",
        )
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
    }
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "Weather in Rome and Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "user", "content": "and Oslo?"},
        ],
        params={"tools": tools, "tool_choice": "required", "parallel_tool_calls": False},
    )
    result = await provider(upstream, http).complete(request)
    sent = upstream.last.json()
    assert sent["tools"] == [
        {
            "name": "weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Weather for a city",
        }
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Rome"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "and Oslo?"},
            ],
        },
    ]
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_2",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
        }
    ]


STREAM_EVENTS: list[tuple[str, Any]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {**message([]), "usage": {"input_tokens": 25, "output_tokens": 1}},
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


async def test_stream_translates_events_to_chunks(upstream: FakeUpstream, http: HttpClient) -> None:
    """Anthropic's event sequence becomes OpenAI chunks, finish reason and usage last."""
    upstream.handler = sse_answer(sse_named(STREAM_EVENTS))
    chunks = [c async for c in provider(upstream, http).stream(HELLO)]
    assert upstream.last.json()["stream"] is True
    assert {c["id"] for c in chunks} == {"msg_01"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_9",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}


async def test_error_event_in_stream(upstream: FakeUpstream, http: HttpClient) -> None:
    """An ``event: error`` mid-stream is raised with its class (overloaded -> server_error)."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.handler = sse_answer(sse_named([STREAM_EVENTS[0], ("error", overloaded)]))
    got, error = await drain(provider(upstream, http).stream(HELLO))
    assert len(got) == 1
    assert isinstance(error, UpstreamError)
    assert error.error_class is ErrorClass.SERVER_ERROR
    assert (error.message, error.type) == ("Overloaded", "overloaded_error")


async def test_rate_limit_error_event(upstream: FakeUpstream, http: HttpClient) -> None:
    """A rate_limit_error event is a rate limit."""
    event = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    upstream.handler = sse_answer(sse_named([("error", event)]))
    _, error = await drain(provider(upstream, http).stream(HELLO))
    assert error is not None
    assert error.error_class is ErrorClass.RATE_LIMIT


async def test_stream_cut_without_message_stop(upstream: FakeUpstream, http: HttpClient) -> None:
    """A stream that ends before message_stop is a connection error."""
    upstream.handler = sse_answer(sse_named(STREAM_EVENTS[:5]))
    got, error = await drain(provider(upstream, http).stream(HELLO))
    assert [c["choices"][0]["delta"].get("content") for c in got] == ["", "Hel", "lo"]
    assert isinstance(error, UpstreamConnectionError)
    assert "stream cut" in error.message


@pytest.mark.parametrize("case", ANTHROPIC_CASES, ids=[c.id for c in ANTHROPIC_CASES])
async def test_error_statuses(upstream: FakeUpstream, http: HttpClient, case: Case) -> None:
    """Each real Anthropic error answer becomes its class, with Retry-After."""
    await upstream.assert_complete_raises(provider(upstream, http), HELLO, case, "anthropic-test")


async def test_malformed_answer(upstream: FakeUpstream, http: HttpClient) -> None:
    """A 200 without a content list is malformed."""
    upstream.handler = json_answer({"id": "msg_1", "type": "message"})
    with pytest.raises(MalformedResponse, match="no content list"):
        await provider(upstream, http).complete(HELLO)


async def test_probe(upstream: FakeUpstream, http: HttpClient) -> None:
    """probe() is GET /models with the Anthropic headers."""
    sent = await upstream.probe_request(provider(upstream, http), {"data": [], "has_more": False})
    assert sent.headers["x-api-key"] == KEY


async def test_arguments_too_deep_to_write_stay_text(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """A client's tool-call arguments nested past the JSON depth bound go on as their text, not a
    500 when the translated request is written."""
    upstream.handler = json_answer(message([{"type": "text", "text": "ok"}]))
    deep = "[" * 300 + "]" * 300
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": deep}}
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "done"},
        ]
    )
    result = await provider(upstream, http).complete(request)
    sent = upstream.last.json()
    assert sent["messages"][1]["content"][0]["input"] == {"arguments": deep}
    assert result["choices"][0]["message"]["content"] == "ok"
