"""The body of ``POST /v1/chat/completions``, checked before anything is sent upstream.

:func:`parse_chat` reads the JSON and checks what OpenAI's API checks: ``model`` a non-empty
string, ``messages`` a non-empty list of objects each with a known ``role``, ``stream`` a
boolean, and the types and ranges of the standard fields (``max_tokens`` within 1..1,000,000,
``temperature`` within 0..2, ...). A failure is an :class:`InvalidRequest` naming the field,
answered 400; nothing a client sends reaches an adapter it could crash.

The body is read by :func:`~failover.server.surfaces.base.read_object`: an object, nested at
most :data:`~failover.jsondepth.MAX_DEPTH` levels deep (``json_too_deep``).

Fields this module does not know are passed through to the provider untouched. OpenAI's own API
accepts extra fields only where its schema defines them; a gateway cannot know every field of
every provider behind it (``reasoning_effort``, ``top_k``, vendor extensions), so it leaves the
verdict to the provider, whose 400 the client then gets as the provider worded it (rule 9).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from failover.errors import InvalidRequest
from failover.server.surfaces.base import Parsed, read_object
from failover.types import ChatRequest

__all__ = ["MAX_TOKENS_CAP", "ROLES", "parse_chat"]

MAX_TOKENS_CAP = 1_000_000
"""The largest ``max_tokens`` accepted: no model answers more, a larger one is a client's bug."""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse_chat(body: bytes) -> Parsed:
    """Read and check a chat request body; raises :class:`InvalidRequest`.

    >>> call = parse_chat(b'{"model": "intent", "messages": [{"role": "user", "content": "hi"}],'
    ...                   b' "temperature": 0, "x-vendor": 1}')
    >>> call.model, call.stream, dict(call.request.params)
    ('intent', False, {'temperature': 0, 'x-vendor': 1})
    """
    data = read_object(body)
    model = data.pop("model", None)
    if type(model) is not str or not model:
        raise _wrong("model", "a non-empty string", model)
    messages = data.pop("messages", None)
    _check_messages(messages)
    stream = data.pop("stream", None)
    if stream is not None and type(stream) is not bool:
        raise _wrong("stream", "a boolean", stream)
    for key, value in data.items():
        check = _PARAMS.get(key)
        if check is not None and value is not None:
            checked = check(key, value)
            if checked is not value:
                data[key] = checked  # e.g. max_tokens 100.0 -> 100 (JSON does not tell them apart)
    return Parsed(model, bool(stream), ChatRequest(messages=messages, params=data))


def _wrong(param: str, expected: str, value: Any) -> InvalidRequest:
    if value is None:
        return InvalidRequest(f"'{param}' is required: {expected}", param=param, code="missing")
    return InvalidRequest(
        f"'{param}' must be {expected}, not {_kind(value)}", param=param, code="invalid_type"
    )


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), "null")


def _check_messages(messages: Any) -> None:
    if type(messages) is not list:
        raise _wrong("messages", "a non-empty array of messages", messages)
    if not messages:
        raise InvalidRequest(
            "'messages' must hold at least one message", param="messages", code="empty_array"
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if type(message) is not dict:
            raise _wrong(where, "an object with a 'role'", message)
        role = message.get("role")
        if type(role) is not str or role not in ROLES:
            if type(role) is str:
                raise InvalidRequest(
                    f"'{where}.role' must be one of {', '.join(sorted(ROLES))}",
                    param=f"{where}.role",
                )
            raise _wrong(f"{where}.role", "a string", role)
        content = message.get("content")
        if content is None:
            if role in ("system", "developer", "user", "tool"):
                raise _wrong(f"{where}.content", "a string or an array of parts", None)
        elif type(content) is list:
            for number, part in enumerate(content):
                if type(part) is not dict or type(part.get("type")) is not str:
                    raise _wrong(f"{where}.content[{number}]", "an object with a 'type'", part)
        elif type(content) is not str:
            raise _wrong(f"{where}.content", "a string or an array of parts", content)
        for name in ("name", "tool_call_id"):
            value = message.get(name)
            if value is not None and type(value) is not str:
                raise _wrong(f"{where}.{name}", "a string", value)
        calls = message.get("tool_calls")
        if calls is not None:
            _objects(f"{where}.tool_calls", calls)


# Each known field's check, called with (name, value) for a value that is not null; it returns
# the value to send on (the same object unless it had to be normalised).
_Check = Callable[[str, Any], Any]


def _number(low: float, high: float) -> _Check:
    def check(name: str, value: Any) -> Any:
        if type(value) not in (int, float):
            raise _wrong(name, "a number", value)
        if not (math.isfinite(value) and low <= value <= high):
            raise InvalidRequest(
                f"'{name}' must be within {low:g} and {high:g}", param=name, code="out_of_range"
            )
        return value

    return check


def _integer(low: int, high: int) -> _Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is float and value.is_integer() and abs(value) <= _EXACT:
            value = int(value)  # 100.0 is the integer 100 in JSON
        if type(value) is not int:
            raise _wrong(name, "an integer", value)
        if not low <= value <= high:
            raise InvalidRequest(
                f"'{name}' must be within {low} and {high}", param=name, code="out_of_range"
            )
        return value

    return check


def _typed(kind: type, expected: str) -> _Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not kind:
            raise _wrong(name, expected, value)
        return value

    return check


def _stop(name: str, value: Any) -> Any:
    if type(value) is str:
        return value
    if type(value) is not list or len(value) > 4 or any(type(v) is not str for v in value):
        raise _wrong(name, "a string or an array of up to 4 strings", value)
    return value


def _string_or_object(name: str, value: Any) -> Any:
    if type(value) not in (str, dict):
        raise _wrong(name, "a string or an object", value)
    return value


def _objects(name: str, value: Any) -> None:
    if type(value) is not list:
        raise _wrong(name, "an array of objects", value)
    for index, item in enumerate(value):
        if type(item) is not dict:
            raise _wrong(f"{name}[{index}]", "an object", item)


def _tools(name: str, value: Any) -> Any:
    _objects(name, value)
    for index, tool in enumerate(value):
        where = f"{name}[{index}]"
        if type(tool.get("type")) is not str:
            raise _wrong(f"{where}.type", "a string", tool.get("type"))
        if "function" in tool:
            function = tool["function"]
            if type(function) is not dict or type(function.get("name")) is not str:
                raise _wrong(f"{where}.function", "an object with a 'name'", function)
    return value


def _response_format(name: str, value: Any) -> Any:
    if type(value) is not dict or type(value.get("type")) is not str:
        raise _wrong(name, "an object with a 'type'", value)
    return value


_EXACT = 2.0**53  # beyond it, a float no longer tells which integer was written
_MAX_TOKENS = _integer(1, MAX_TOKENS_CAP)
_PARAMS: dict[str, _Check] = {
    "max_tokens": _MAX_TOKENS,
    "max_completion_tokens": _MAX_TOKENS,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "n": _integer(1, 128),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "seed": _integer(-(2**63), 2**63 - 1),
    "logprobs": _typed(bool, "a boolean"),
    "top_logprobs": _integer(0, 20),
    "parallel_tool_calls": _typed(bool, "a boolean"),
    "user": _typed(str, "a string"),
    "stop": _stop,
    "tools": _tools,
    "tool_choice": _string_or_object,
    "response_format": _response_format,
    "stream_options": _typed(dict, "an object"),
    "logit_bias": _typed(dict, "an object"),
    "metadata": _typed(dict, "an object"),
}
