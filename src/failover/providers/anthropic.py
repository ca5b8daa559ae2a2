"""Anthropic's Messages API (``POST {base}/messages``), behind OpenAI shapes.

Request: system messages become ``system``; tool calls become ``tool_use`` blocks and tool
messages ``tool_result`` blocks in a user turn; consecutive turns of one role are merged (the API
wants them alternating); ``max_tokens`` is required (4096 when the client gave none).
Answer: text blocks joined, ``tool_use`` blocks as ``tool_calls``, ``stop_reason`` mapped.
Stream: ``message_start`` … ``message_stop`` events become OpenAI chunks, usage on the last one;
an ``error`` event is a classed error; a stream without ``message_stop`` was cut.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from failover.config import DeploymentConfig
from failover.errors import MalformedResponse, UpstreamConnectionError
from failover.providers import openai_shapes as shapes
from failover.providers.adapter import HttpAdapter
from failover.providers.http import HttpClient, UpstreamResponse, api_key
from failover.providers.sse import event_object
from failover.types import ChatRequest, Completion, StreamChunk, Usage

__all__ = ["AnthropicProvider", "from_anthropic", "to_anthropic"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider(HttpAdapter):
    """A deployment on Anthropic's Messages API."""

    __slots__ = ("_messages_url",)

    def __init__(self, deployment: DeploymentConfig, http: HttpClient) -> None:
        key = api_key(deployment)
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        super().__init__(deployment, http, headers)
        self._messages_url = self._endpoint.target("/messages")

    async def complete(self, request: ChatRequest) -> Completion:
        """One message, as a ``chat.completion``."""
        body = orjson.dumps(to_anthropic(request, self._deployment.model, stream=False))
        payload = await self._endpoint.post_json(self._messages_url, body)
        if isinstance(payload, dict) and payload.get("type") == "error":
            raise self._endpoint.event_error(payload)
        return from_anthropic(payload, self._deployment.model, self._endpoint.name)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The message's events as ``chat.completion.chunk`` dicts."""
        body = orjson.dumps(to_anthropic(request, self._deployment.model, stream=True))
        async with self._endpoint.post_stream(self._messages_url, body) as response:
            async for item in self._chunks(response):
                yield item

    async def _chunks(self, response: UpstreamResponse) -> AsyncIterator[StreamChunk]:
        name = self._endpoint.name
        model = self._deployment.model
        message_id = shapes.new_id("msg_")
        created = int(time.time())
        prompt_tokens = completion_tokens = 0
        finish_reason = "stop"
        tool_index: dict[int, int] = {}  # content block index -> tool call index
        async for event in response.events():
            data = event_object(event, name)
            kind = data.get("type") or event.event
            if kind == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta":
                    if text := delta.get("text"):
                        yield shapes.chunk(message_id, model, created, {"content": text})
                elif delta.get("type") == "input_json_delta":
                    index = tool_index.get(data.get("index", -1))
                    if index is not None and (partial := delta.get("partial_json")):
                        call = {"index": index, "function": {"arguments": partial}}
                        yield shapes.chunk(message_id, model, created, {"tool_calls": [call]})
                # thinking, signature and citation deltas have no OpenAI chunk field.
            elif kind == "content_block_start":
                block = data.get("content_block") or {}
                if block.get("type") == "tool_use":
                    index = tool_index[data.get("index", len(tool_index))] = len(tool_index)
                    call = {
                        "index": index,
                        "id": block.get("id") or shapes.new_id("toolu_"),
                        "type": "function",
                        "function": {"name": block.get("name", ""), "arguments": ""},
                    }
                    yield shapes.chunk(message_id, model, created, {"tool_calls": [call]})
                elif block.get("type") == "text" and (text := block.get("text")):
                    yield shapes.chunk(message_id, model, created, {"content": text})
            elif kind == "message_start":
                message = data.get("message") or {}
                message_id = message.get("id") or message_id
                model = message.get("model") or model
                prompt_tokens, completion_tokens = _usage_counts(message.get("usage"))
                yield shapes.chunk(message_id, model, created, {"role": "assistant", "content": ""})
            elif kind == "message_delta":
                reason = (data.get("delta") or {}).get("stop_reason")
                if reason:
                    finish_reason = _FINISH_REASONS.get(reason, "stop")
                usage = data.get("usage") or {}
                # message_delta carries cumulative counts; input only in newer API versions.
                if isinstance(usage.get("output_tokens"), int):
                    completion_tokens = usage["output_tokens"]
                if isinstance(usage.get("input_tokens"), int):
                    prompt_tokens, _ = _usage_counts(usage)
            elif kind == "message_stop":
                yield shapes.chunk(message_id, model, created, {}, finish_reason=finish_reason)
                usage_total = Usage(prompt_tokens, completion_tokens)
                yield shapes.usage_chunk(message_id, model, created, usage_total)
                return
            elif kind == "error":
                raise self._endpoint.event_error(data)
            # ping, content_block_stop and event types added later carry nothing for us.
        raise UpstreamConnectionError("stream cut: it ended without message_stop", deployment=name)

    def __repr__(self) -> str:
        return f"<AnthropicProvider {self._endpoint.name!r} {self._deployment.model}>"


def to_anthropic(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The Messages API body for an OpenAI-style request."""
    params = request.params
    system, turns = shapes.split_system(request.messages)
    messages: list[dict[str, Any]] = []
    for message in turns:
        role = message.get("role")
        if role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id") or "",
                    "content": shapes.content_text(message.get("content")),
                }
            ]
        else:
            role = "user"
            blocks = _user_blocks(message.get("content"))
        if not blocks:
            continue  # the API rejects empty turns
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    body: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        body["system"] = system
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    body["max_tokens"] = max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
    if (temperature := params.get("temperature")) is not None:
        # OpenAI allows 0-2, Anthropic 0-1: clamping beats a 400 on a fallback target.
        is_number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
        body["temperature"] = min(temperature, 1.0) if is_number else temperature
    if (top_p := params.get("top_p")) is not None:
        body["top_p"] = top_p
    if (top_k := params.get("top_k")) is not None:
        body["top_k"] = top_k
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(user := params.get("user"), str):
        body["metadata"] = {"user_id": user}
    tools = params.get("tools")
    if tools:
        body["tools"] = [_tool(tool) for tool in tools if isinstance(tool, dict)]
    tool_choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if tool_choice is not None and tools:
        body["tool_choice"] = tool_choice
    if stream:
        body["stream"] = True
    return body


def from_anthropic(payload: Any, model: str, deployment: str) -> Completion:
    """A ``chat.completion`` for a Messages API answer."""
    if not isinstance(payload, dict) or not isinstance(payload.get("content"), list):
        raise MalformedResponse("the answer has no content list", deployment=deployment, status=200)
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in payload["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id") or shapes.new_id("toolu_"),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": shapes.arguments_json(block.get("input")),
                    },
                }
            )
    finish = _FINISH_REASONS.get(payload.get("stop_reason") or "end_turn", "stop")
    text = "".join(texts)
    return shapes.completion(
        id=payload.get("id") or shapes.new_id("msg_"),
        model=payload.get("model") or model,
        choices=[shapes.choice(0, text if text or not tool_calls else None, tool_calls, finish)],
        usage=Usage(*_usage_counts(payload.get("usage"))),
    )


def _usage_counts(usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens; cache reads and writes are prompt tokens in OpenAI's terms."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt = sum(
        value
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        if isinstance(value := usage.get(key), int)
    )
    output = usage.get("output_tokens")
    return prompt, output if isinstance(output, int) else 0


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": value}
        if kind == "text"
        else {"type": "image", "source": _image_source(value)}
        for kind, value in shapes.text_and_images(content)
    ]


def _image_source(url: str) -> dict[str, Any]:
    data = shapes.parse_data_url(url)
    if data is not None:
        return {"type": "base64", "media_type": data[0], "data": data[1]}
    return {"type": "url", "url": url}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if text := shapes.content_text(message.get("content")):
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or shapes.new_id("toolu_"),
                "name": function.get("name", ""),
                "input": shapes.parse_arguments(function.get("arguments")),
            }
        )
    return blocks


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    out: dict[str, Any] = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(value: Any, parallel: Any) -> dict[str, Any] | None:
    if value is None and parallel is not False:
        return None
    if value == "required":
        out: dict[str, Any] = {"type": "any"}
    elif value == "none":
        out = {"type": "none"}
    elif isinstance(value, dict) and isinstance(value.get("function"), dict):
        out = {"type": "tool", "name": value["function"].get("name", "")}
    else:
        out = {"type": "auto"}
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out
