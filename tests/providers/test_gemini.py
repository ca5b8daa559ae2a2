"""The Gemini adapter against a fake speaking generateContent / streamGenerateContent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from failover.errors import ErrorClass, MalformedResponse, UpstreamConnectionError, UpstreamError
from failover.providers import GeminiProvider, HttpClient
from failover.types import ChatRequest
from tests.providers.conftest import (
    FakeUpstream,
    deployment,
    drain,
    json_answer,
    sse_answer,
)
from tests.providers.shapes import GEMINI_CASES, GOOGLE_KEY, Case

HELLO = ChatRequest(messages=[{"role": "user", "content": "hi"}])
USAGE = {
    "promptTokenCount": 8,
    "candidatesTokenCount": 3,
    "thoughtsTokenCount": 2,
    "totalTokenCount": 13,
}


def answer(parts: list[dict[str, Any]], finish: str = "STOP", **extra: Any) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
        ],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc123",
        **extra,
    }


def provider(
    upstream: FakeUpstream, http: HttpClient, model: str = "gemini-2.5-flash"
) -> GeminiProvider:
    return GeminiProvider(deployment("gemini", upstream.url, model=model, key=GOOGLE_KEY), http)


def gemini_sse(*payloads: dict[str, Any]) -> list[str]:
    """Gemini's alt=sse framing: data lines ended by CRLF."""
    return [f"data: {orjson.dumps(p).decode()}\r\n\r\n" for p in payloads]


async def test_plain_completion(upstream: FakeUpstream, http: HttpClient) -> None:
    """POST models/{model}:generateContent with x-goog-api-key; answer as a chat.completion."""
    upstream.handler = json_answer(answer([{"text": "Hello"}, {"text": " there"}]))
    result = await provider(upstream, http, model="models/gemini-2.5-flash").complete(HELLO)
    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/models/gemini-2.5-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == GOOGLE_KEY
    assert "key" not in sent.query
    assert sent.json() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert result["id"] == "chatcmpl-abc123"
    assert result["choices"][0]["message"]["content"] == "Hello there"
    assert result["choices"][0]["finish_reason"] == "stop"
    # Thinking tokens are output tokens.
    assert result["usage"] == {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}


async def test_multi_turn_with_system_translation(upstream: FakeUpstream, http: HttpClient) -> None:
    """systemInstruction, user/model roles with merged turns, and generationConfig."""
    upstream.handler = json_answer(answer([{"text": "ok"}], "MAX_TOKENS"))
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                ],
            },
        ],
        params={
            "temperature": 0.2,
            "top_p": 0.5,
            "max_tokens": 64,
            "stop": ["END"],
            "seed": 7,
            "response_format": {"type": "json_object"},
        },
    )
    result = await provider(upstream, http).complete(request)
    assert upstream.last.json() == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {
                "role": "user",
                "parts": [
                    {"text": "again"},
                    {"text": "see"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.5,
            "seed": 7,
            "maxOutputTokens": 64,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
        },
    }
    assert result["choices"][0]["finish_reason"] == "length"


async def test_tool_calls_and_results(upstream: FakeUpstream, http: HttpClient) -> None:
    """functionDeclarations, toolConfig, functionCall/functionResponse, signatures both ways."""
    upstream.handler = json_answer(
        answer(
            [
                {
                    "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "c2ln",
                }
            ]
        )
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "strict": {"type": "boolean"}},
                    "additionalProperties": False,
                },
            },
        },
        {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
    }
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
            {"role": "tool", "tool_call_id": "call_x", "name": "now", "content": "noon"},
        ],
        params={
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
        },
    )
    result = await provider(upstream, http).complete(request)
    sent = upstream.last.json()
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "strict": {"type": "boolean"}},
                    },
                },
                {"name": "now"},
            ]
        }
    ]
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
    }
    assert sent["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "weather", "args": {"city": "Rome"}},
                    # A call Gemini did not sign gets Google's documented stand-in.
                    "thoughtSignature": "skip_thought_signature_validator",
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"sky": "sunny"}}},
                {"functionResponse": {"name": "now", "response": {"result": "noon"}}},
            ],
        },
    ]
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [tool_call] = choice["message"]["tool_calls"]
    assert tool_call["id"].startswith("call_")
    assert tool_call["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert tool_call["extra_content"] == {"google": {"thought_signature": "c2ln"}}


async def test_signature_goes_back_on_the_next_turn(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """A tool call carrying Gemini's signature sends that signature back."""
    upstream.handler = json_answer(answer([{"text": "done"}]))
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "c2ln"}},
    }
    request = ChatRequest(
        messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]
    )
    await provider(upstream, http).complete(request)
    part = upstream.last.json()["contents"][1]["parts"][0]
    assert part == {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}


async def test_stream_translates_chunks(upstream: FakeUpstream, http: HttpClient) -> None:
    """streamGenerateContent?alt=sse chunks become OpenAI chunks; finish and usage last."""
    upstream.handler = sse_answer(
        gemini_sse(
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}
                ],
                "responseId": "r1",
            },
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [{"text": "thinking", "thought": True}, {"text": "lo"}],
                        },
                        "index": 0,
                    }
                ]
            },
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}],
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": USAGE,
            },
        )
    )
    chunks = [c async for c in provider(upstream, http).stream(HELLO)]
    sent = upstream.last
    assert sent.path == "/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    assert {c["id"] for c in chunks} == {"chatcmpl-r1"}
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[:3] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
    ]
    [call] = deltas[3]["tool_calls"]
    assert (call["index"], call["function"]) == (0, {"name": "f", "arguments": '{"a":1}'})
    assert deltas[4] == {}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}


async def test_stream_cut_before_finish_reason(upstream: FakeUpstream, http: HttpClient) -> None:
    """A stream that ends before any finishReason is a connection error."""
    upstream.handler = sse_answer(
        gemini_sse({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]})
    )
    got, error = await drain(provider(upstream, http).stream(HELLO))
    assert [c["choices"][0]["delta"] for c in got] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
    ]
    assert isinstance(error, UpstreamConnectionError)
    assert "stream cut" in error.message


async def test_error_in_stream(upstream: FakeUpstream, http: HttpClient) -> None:
    """An error object inside the stream is raised, classed by its code and status."""
    upstream.handler = sse_answer(
        gemini_sse(
            {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded.",
                    "status": "UNAVAILABLE",
                }
            },
        )
    )
    got, error = await drain(provider(upstream, http).stream(HELLO))
    assert len(got) == 2
    assert isinstance(error, UpstreamError)
    assert error.error_class is ErrorClass.SERVER_ERROR


async def test_safety_finish_and_blocked_prompt(upstream: FakeUpstream, http: HttpClient) -> None:
    """SAFETY maps to content_filter; a blocked prompt is a filtered answer, not a broken one."""
    upstream.handler = json_answer(answer([], "SAFETY"))
    result = await provider(upstream, http).complete(HELLO)
    assert result["choices"][0]["finish_reason"] == "content_filter"
    upstream.handler = json_answer(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE}
    )
    result = await provider(upstream, http).complete(HELLO)
    assert result["choices"][0]["finish_reason"] == "content_filter"
    assert result["choices"][0]["message"]["content"] is None


async def test_no_candidates_is_malformed(upstream: FakeUpstream, http: HttpClient) -> None:
    """A 200 without candidates or a block reason is malformed."""
    upstream.handler = json_answer({"usageMetadata": USAGE})
    with pytest.raises(MalformedResponse, match="no candidates"):
        await provider(upstream, http).complete(HELLO)


@pytest.mark.parametrize("case", GEMINI_CASES, ids=[c.id for c in GEMINI_CASES])
async def test_error_statuses(upstream: FakeUpstream, http: HttpClient, case: Case) -> None:
    """Each real Gemini error answer becomes its class, with Retry-After (retryDelay too)."""
    await upstream.assert_complete_raises(provider(upstream, http), HELLO, case, "gemini-test")


async def test_probe(upstream: FakeUpstream, http: HttpClient) -> None:
    """probe() is GET /models with the key header."""
    sent = await upstream.probe_request(provider(upstream, http), {"models": []})
    assert sent.headers["x-goog-api-key"] == GOOGLE_KEY


async def test_deep_tool_results_and_arguments_stay_text(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """A tool result or tool-call arguments nested past the JSON depth bound go on as text."""
    upstream.handler = json_answer(answer([{"text": "ok"}]))
    deep = "[" * 300 + "]" * 300
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": deep}}
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": deep},
        ]
    )
    result = await provider(upstream, http).complete(request)
    parts = [part for turn in upstream.last.json()["contents"] for part in turn["parts"]]
    assert {"name": "f", "args": {"arguments": deep}} in [p.get("functionCall") for p in parts]
    assert {"name": "f", "response": {"result": deep}} in [p.get("functionResponse") for p in parts]
    assert result["choices"][0]["message"]["content"] == "ok"
