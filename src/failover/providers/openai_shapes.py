"""Builders and readers of OpenAI Chat Completions shapes, shared by the translating adapters.

Anthropic and Gemini answers are turned into these dicts, so that the engine, the gateway and
the library's users only ever see OpenAI's ``chat.completion`` and ``chat.completion.chunk``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from failover.errors import MalformedResponse
from failover.jsondepth import nested_deeper
from failover.types import Completion, StreamChunk, Usage

__all__ = [
    "arguments_json",
    "choice",
    "chunk",
    "completion",
    "content_parts",
    "content_text",
    "new_id",
    "parse_arguments",
    "parse_data_url",
    "split_system",
    "text_and_images",
    "usage_chunk",
    "validate_completion",
]


def new_id(prefix: str) -> str:
    """A fresh id such as ``call_3f2a…`` for what the provider did not name."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def completion(
    *,
    id: str,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage,
) -> Completion:
    """A ``chat.completion`` object."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage.to_openai(),
    }


def choice(
    index: int,
    text: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str | None,
) -> dict[str, Any]:
    """One choice of a completion: the assistant message and why it ended."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def chunk(
    id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    *,
    index: int = 0,
    finish_reason: str | None = None,
) -> StreamChunk:
    """A ``chat.completion.chunk`` with one choice."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        ],
    }


def usage_chunk(id: str, model: str, created: int, usage: Usage) -> StreamChunk:
    """The last chunk of a stream, as OpenAI sends it with ``include_usage``: no choices."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_openai(),
    }


def validate_completion(payload: Any, deployment: str) -> Completion:
    """Rule 10: at least one choice with a message (content may be empty), else malformed."""
    if not isinstance(payload, dict):
        raise MalformedResponse("the body is not a JSON object", deployment=deployment, status=200)
    choices = payload.get("choices")
    if isinstance(choices, list):
        for item in choices:
            if isinstance(item, dict) and isinstance(item.get("message"), dict):
                return payload
    raise MalformedResponse(
        "the completion has no choice with a message", deployment=deployment, status=200
    )


def content_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text") or ""
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return str(content)


def content_parts(content: Any) -> list[dict[str, Any]]:
    """An OpenAI message ``content`` as a list of parts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [part for part in content if isinstance(part, dict)]
    return [{"type": "text", "text": str(content)}]


def split_system(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The system and developer messages' text, joined by blank lines, and the other messages.

    For the APIs that take the system prompt apart from the turns.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") not in ("system", "developer"):
            turns.append(message)
        elif text := content_text(message.get("content")):
            system.append(text)
    return "\n\n".join(system), turns


def text_and_images(content: Any) -> Iterator[tuple[str, Any]]:
    """A user ``content``'s parts as ``("text", text)`` and ``("image_url", url)``, in order.

    Empty texts, image parts without a URL string and other kinds of part are left out.
    """
    for part in content_parts(content):
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if text := part.get("text"):
                yield "text", text
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                yield "image_url", url


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ``("image/png", "AAAA")``; ``None`` for other URLs."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header[: -len(";base64")] or "application/octet-stream", data


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON string) as an object; anything else wrapped or empty."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if value is None or nested_deeper(value):
        # Providers need an object; keep what the client sent rather than dropping it (a value
        # too deep to be written out again stays the text it came as).
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def arguments_json(arguments: Any) -> str:
    """A provider's tool input object as OpenAI's ``arguments`` JSON string."""
    return orjson.dumps(arguments if arguments is not None else {}).decode()
