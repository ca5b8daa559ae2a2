"""Google's Gemini API (``models/{model}:generateContent``), behind OpenAI shapes.

Request: system messages become ``systemInstruction``; roles become ``user``/``model`` with
consecutive turns merged; tool calls become ``functionCall`` parts and tool messages
``functionResponse`` parts (named after the call they answer); sampling goes to
``generationConfig``; tools to ``functionDeclarations``.
Answer: text parts joined (thought parts skipped), ``functionCall`` parts as ``tool_calls``,
``finishReason`` mapped, ``usageMetadata`` as usage. Thinking models sign their function calls;
the signature rides along as ``extra_content.google.thought_signature`` on the tool call, the
field Google's own OpenAI-compatible endpoint uses, and comes back on the next turn.
Stream: ``:streamGenerateContent?alt=sse`` sends whole ``GenerateContentResponse`` objects; one
without any ``finishReason`` before the end was cut.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from failover.config import DeploymentConfig
from failover.errors import MalformedResponse, UpstreamConnectionError
from failover.jsondepth import nested_deeper
from failover.providers import openai_shapes as shapes
from failover.providers.adapter import HttpAdapter
from failover.providers.http import HttpClient, UpstreamResponse, api_key
from failover.providers.sse import event_object
from failover.types import ChatRequest, Completion, StreamChunk, Usage

__all__ = ["GeminiProvider", "from_gemini", "to_gemini"]

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

# Google's documented stand-in for a function call that Gemini did not sign (a history that
# began on another provider, which is exactly what failover produces).
_SKIP_SIGNATURE = "skip_thought_signature_validator"

# JSON Schema keywords Gemini's OpenAPI-subset ``parameters`` rejects.
_UNSUPPORTED_SCHEMA_KEYS = frozenset({"$schema", "additionalProperties", "strict", "$id"})


class GeminiProvider(HttpAdapter):
    """A deployment on the Gemini API (Google AI Studio)."""

    __slots__ = ("_generate_url", "_stream_url")

    def __init__(self, deployment: DeploymentConfig, http: HttpClient) -> None:
        key = api_key(deployment)
        # The key goes in a header, never in the URL, so no URL in any message can leak it.
        super().__init__(deployment, http, {"x-goog-api-key": key} if key else {})
        model = deployment.model.removeprefix("models/")
        self._generate_url = self._endpoint.target(f"/models/{model}:generateContent")
        self._stream_url = self._endpoint.target(f"/models/{model}:streamGenerateContent?alt=sse")

    async def complete(self, request: ChatRequest) -> Completion:
        """One ``generateContent`` answer as a ``chat.completion``."""
        body = orjson.dumps(to_gemini(request))
        payload = await self._endpoint.post_json(self._generate_url, body)
        if isinstance(payload, dict) and payload.get("error"):
            raise self._endpoint.event_error(payload)
        return from_gemini(payload, self._deployment.model, self._endpoint.name)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The ``streamGenerateContent`` answers as ``chat.completion.chunk`` dicts."""
        body = orjson.dumps(to_gemini(request))
        async with self._endpoint.post_stream(self._stream_url, body) as response:
            async for item in self._chunks(response):
                yield item

    async def _chunks(self, response: UpstreamResponse) -> AsyncIterator[StreamChunk]:
        name = self._endpoint.name
        model = self._deployment.model
        stream_id = shapes.new_id("chatcmpl-")
        created = int(time.time())
        started = False
        finish: dict[int, str] = {}
        tool_counts: dict[int, int] = {}
        usage = Usage()
        async for event in response.events():
            data = event_object(event, name)
            if data.get("error"):
                raise self._endpoint.event_error(data)
            if not started:
                started = True
                stream_id = _completion_id(data.get("responseId")) or stream_id
                yield shapes.chunk(stream_id, model, created, {"role": "assistant", "content": ""})
            if isinstance(metadata := data.get("usageMetadata"), dict):
                usage = _usage(metadata)
            candidates = data.get("candidates")
            if not candidates:
                reason = (data.get("promptFeedback") or {}).get("blockReason")
                if reason:
                    finish[0] = "content_filter"
                continue
            for candidate in candidates:
                if not isinstance(candidate, dict):
                    continue
                index = candidate.get("index", 0)
                text, calls = _parts(candidate)
                if text:
                    yield shapes.chunk(stream_id, model, created, {"content": text}, index=index)
                for call in calls:
                    position = tool_counts.get(index, 0)
                    tool_counts[index] = position + 1
                    delta = {"tool_calls": [{"index": position, **call}]}
                    yield shapes.chunk(stream_id, model, created, delta, index=index)
                if reason := candidate.get("finishReason"):
                    finish[index] = _finish_reason(reason, bool(tool_counts.get(index)))
        if not finish:
            raise UpstreamConnectionError(
                "stream cut: it ended before any finishReason", deployment=name
            )
        for index, reason in sorted(finish.items()):
            yield shapes.chunk(stream_id, model, created, {}, index=index, finish_reason=reason)
        yield shapes.usage_chunk(stream_id, model, created, usage)

    def __repr__(self) -> str:
        return f"<GeminiProvider {self._endpoint.name!r} {self._deployment.model}>"


def to_gemini(request: ChatRequest) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI-style request."""
    params = request.params
    system, turns = shapes.split_system(request.messages)
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, for functionResponse
    for message in turns:
        role = message.get("role")
        if role == "assistant":
            role = "model"
            parts = _model_parts(message, call_names)
        elif role == "tool":
            role = "user"
            call_id = message.get("tool_call_id") or ""
            response = _response_object(message.get("content"))
            function = call_names.get(call_id) or message.get("name") or "tool"
            parts = [{"functionResponse": {"name": function, "response": response}}]
        else:
            role = "user"
            parts = _user_parts(message.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = _generation_config(params)
    if config:
        body["generationConfig"] = config
    tools = [t for t in params.get("tools") or () if isinstance(t, dict)]
    if tools:
        body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in tools]}]
        tool_config = _tool_config(params.get("tool_choice"))
        if tool_config is not None:
            body["toolConfig"] = tool_config
    return body


def from_gemini(payload: Any, model: str, deployment: str) -> Completion:
    """A ``chat.completion`` for a ``GenerateContentResponse``."""
    if not isinstance(payload, dict):
        raise MalformedResponse("the answer is not an object", deployment=deployment, status=200)
    usage = _usage(payload.get("usageMetadata"))
    response_id = _completion_id(payload.get("responseId")) or shapes.new_id("chatcmpl-")
    candidates = payload.get("candidates")
    if not candidates:
        if (payload.get("promptFeedback") or {}).get("blockReason"):
            # The prompt itself was blocked: a finished, filtered answer, not a broken one.
            filtered = [shapes.choice(0, None, [], "content_filter")]
            return shapes.completion(id=response_id, model=model, choices=filtered, usage=usage)
        raise MalformedResponse("the answer has no candidates", deployment=deployment, status=200)
    choices = []
    for position, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            continue
        text, tool_calls = _parts(candidate)
        reason = _finish_reason(candidate.get("finishReason") or "STOP", bool(tool_calls))
        content = text if text or not tool_calls else None
        index = candidate.get("index", position)
        choices.append(shapes.choice(index, content, tool_calls, reason))
    if not choices:
        raise MalformedResponse("the answer has no candidates", deployment=deployment, status=200)
    return shapes.completion(id=response_id, model=model, choices=choices, usage=usage)


def _parts(candidate: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A candidate's visible text and its function calls (as OpenAI tool calls, no index)."""
    content = candidate.get("content") or {}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in content.get("parts") or ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
        elif isinstance(call := part.get("functionCall"), dict):
            tool_call: dict[str, Any] = {
                "id": call.get("id") or shapes.new_id("call_"),
                "type": "function",
                "function": {
                    "name": call.get("name", ""),
                    "arguments": shapes.arguments_json(call.get("args")),
                },
            }
            if isinstance(signature := part.get("thoughtSignature"), str):
                tool_call["extra_content"] = {"google": {"thought_signature": signature}}
            calls.append(tool_call)
    return "".join(texts), calls


def _finish_reason(reason: str, has_tool_calls: bool) -> str:
    mapped = _FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if has_tool_calls and mapped == "stop" else mapped


def _usage(metadata: Any) -> Usage:
    if not isinstance(metadata, dict):
        return Usage()

    def count(key: str) -> int:
        value = metadata.get(key)
        return value if isinstance(value, int) else 0

    # Thinking tokens are billed as output, as OpenAI counts reasoning in completion_tokens.
    return Usage(
        count("promptTokenCount"), count("candidatesTokenCount") + count("thoughtsTokenCount")
    )


def _completion_id(response_id: Any) -> str | None:
    return f"chatcmpl-{response_id}" if isinstance(response_id, str) and response_id else None


def _user_parts(content: Any) -> list[dict[str, Any]]:
    return [
        {"text": value} if kind == "text" else _image_part(value)
        for kind, value in shapes.text_and_images(content)
    ]


def _image_part(url: str) -> dict[str, Any]:
    data = shapes.parse_data_url(url)
    if data is not None:
        return {"inlineData": {"mimeType": data[0], "data": data[1]}}
    return {"fileData": {"mimeType": _guess_image_type(url), "fileUri": url}}


def _model_parts(message: dict[str, Any], call_names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if text := shapes.content_text(message.get("content")):
        parts.append({"text": text})
    first_call = True
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        name = function.get("name", "")
        if call.get("id"):
            call_names[call["id"]] = name
        part: dict[str, Any] = {
            "functionCall": {
                "name": name,
                "args": shapes.parse_arguments(function.get("arguments")),
            }
        }
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str):
            part["thoughtSignature"] = signature
        elif first_call:
            # Gemini 3 rejects an unsigned first call of a turn; Google documents this value
            # for histories it did not produce.
            part["thoughtSignature"] = _SKIP_SIGNATURE
        first_call = False
        parts.append(part)
    return parts


def _response_object(content: Any) -> dict[str, Any]:
    """A tool result as the object ``functionResponse.response`` must be."""
    text = shapes.content_text(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    if nested_deeper(value):
        return {"result": text}  # too deep to be written out again: it stays text
    return value if isinstance(value, dict) else {"result": value}


def _generation_config(params: Any) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for openai_name, gemini_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if (value := params.get(openai_name)) is not None:
            config[gemini_name] = value
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = params.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseSchema"] = _schema(schema)
    return config


def _declaration(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    declaration: dict[str, Any] = {"name": function.get("name", "")}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    # An object schema without properties is refused; a function without parameters is not.
    if isinstance(parameters, dict) and parameters.get("properties"):
        declaration["parameters"] = _schema(parameters)
    return declaration


def _schema(schema: Any) -> Any:
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _UNSUPPORTED_SCHEMA_KEYS:
                continue
            if key == "properties" and isinstance(value, dict):
                # Property names are the user's, never keywords: keep every one.
                out[key] = {name: _schema(sub) for name, sub in value.items()}
            else:
                out[key] = _schema(value)
        return out
    if isinstance(schema, list):
        return [_schema(item) for item in schema]
    return schema


def _tool_config(tool_choice: Any) -> dict[str, Any] | None:
    if tool_choice is None:
        return None
    if tool_choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if tool_choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return {"functionCallingConfig": {"mode": "AUTO"}}


def _guess_image_type(url: str) -> str:
    lowered = url.lower().split("?", 1)[0]
    for suffix, mime in ((".png", "image/png"), (".webp", "image/webp"), (".gif", "image/gif")):
        if lowered.endswith(suffix):
            return mime
    return "image/jpeg"
