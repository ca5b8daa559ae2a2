"""The chat body's checks (:mod:`failover.server.surfaces.chat_checks`): how deep it may nest.

``orjson.loads`` reads 1024 levels and ``orjson.dumps`` writes 254: a body between the two was
accepted and then failed to go upstream (a 500, or the route's default and a CRITICAL alert).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest

from failover.errors import InvalidRequest
from failover.jsondepth import MAX_DEPTH
from failover.mock_upstream import MockUpstream
from failover.server.surfaces.chat_checks import parse_chat
from tests.server.helpers import CLIENT_KEY, MESSAGES, gateway_config, running

Mocks = tuple[MockUpstream, MockUpstream]


def _nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` arrays and objects, alternating, around ``leaf``."""
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def _text(levels: int) -> bytes:
    """The JSON of ``_nested(levels)``, written by hand (orjson writes no deeper than 254)."""
    opening = b"".join(b"[" if level % 2 else b'{"k":' for level in reversed(range(levels)))
    closing = b"".join(b"]" if level % 2 else b"}" for level in range(levels))
    return opening + b"1" + closing


def _body(**fields: Any) -> bytes:
    """A chat body with ``fields``; a field given as an int is that many levels of nesting."""
    plain = {k: v for k, v in fields.items() if type(v) is not int}
    body = orjson.dumps({"model": "intent", "messages": MESSAGES, **plain})[:-1]
    for name, levels in fields.items():
        if type(levels) is int:
            body += b",%s:%s" % (orjson.dumps(name), _text(levels))
    return body + b"}"


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_the_limit_is_below_what_orjson_writes() -> None:
    """The limit leaves room under orjson.dumps' own (an adapter may wrap a field deeper)."""
    assert orjson.dumps(_nested(254))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(_nested(255))
    assert 64 <= MAX_DEPTH <= 254 - 64


def test_a_body_at_the_limit_is_accepted() -> None:
    """A body nested exactly MAX_DEPTH levels (itself included) is accepted untouched."""
    body = _body(x=MAX_DEPTH - 1)
    assert json.loads(_text(5)) == _nested(5)
    assert _depth(json.loads(body)) == MAX_DEPTH
    call = parse_chat(body)
    assert call.request.params["x"] == _nested(MAX_DEPTH - 1)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 200, 254, 255, 1000, 1023, 1024, 1025, 5000])
def test_deeper_bodies_are_refused_naming_the_field(levels: int) -> None:
    """One level past the limit, up to and past orjson's 1024: json_too_deep, naming the field
    when orjson could read the body."""
    body = _body(tools=[], x=levels - 1)
    with pytest.raises(InvalidRequest) as caught:
        parse_chat(body)
    error = caught.value
    assert error.code == "json_too_deep"
    assert str(MAX_DEPTH) in error.message
    assert error.param == ("x" if levels <= 1024 else None)


def test_depth_anywhere_counts() -> None:
    """Depth hidden in a message's content part or a tool's schema is refused the same way."""
    deep = _nested(MAX_DEPTH)
    part = {"role": "user", "content": [{"type": "text", "text": "hi", "extra": deep}]}
    tool = {"type": "function", "function": {"name": "f", "parameters": deep}}
    for body, param in (
        (orjson.dumps({"model": "intent", "messages": [part]}), "messages"),
        (_body(tools=[tool]), "tools"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_chat(body)
        assert (caught.value.code, caught.value.param) == ("json_too_deep", param)


def test_wide_bodies_are_not_too_deep() -> None:
    """Thousands of messages and tools (many brackets, shallow) are accepted."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] * 3000
    tools = [{"type": "function", "function": {"name": "f", "parameters": _nested(20)}}] * 300
    call = parse_chat(orjson.dumps({"model": "intent", "messages": messages, "tools": tools}))
    assert len(call.request.messages) == 3000


def test_an_odd_field_name_is_not_repeated() -> None:
    """A deep field with a long or unprintable name is refused without naming it."""
    for name in ("n" * 65, "bad\nname"):
        with pytest.raises(InvalidRequest) as caught:
            parse_chat(_body(**{name: MAX_DEPTH}))
        assert (caught.value.code, caught.value.param) == ("json_too_deep", None)
        assert name not in caught.value.message


@pytest.mark.parametrize("default", [None, "Sorry, try again later."])
async def test_deep_bodies_are_400_over_http_and_never_reach_upstream(
    mocks: Mocks, default: str | None
) -> None:
    """Through the gateway, with or without a default response: 400 json_too_deep, the provider
    never called; a body at the limit is answered 200 by the provider."""
    main, fallback = mocks
    route: dict[str, Any] = {} if default is None else {"default_response": default}
    async with running(gateway_config(main, fallback, **route)) as gw:
        headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for levels in (MAX_DEPTH + 1, 254, 600, 1023):
                body = _body(x=levels - 1)
                async with http.post(f"{gw.url}/chat/completions", data=body) as answer:
                    payload = await answer.json()
                    assert answer.status == 400, (levels, payload)
                    assert "x-failover-degraded" not in answer.headers
                error = payload["error"]
                assert (error["type"], error["code"], error["param"]) == (
                    "invalid_request_error",
                    "json_too_deep",
                    "x",
                )
            assert main.stats.requests == fallback.stats.requests == 0
            body = _body(x=MAX_DEPTH - 1)
            async with http.post(f"{gw.url}/chat/completions", data=body) as answer:
                assert answer.status == 200, await answer.text()
                assert answer.headers["x-failover-deployment"] == "main"
                assert "x-failover-degraded" not in answer.headers
    assert main.stats.requests == 1
