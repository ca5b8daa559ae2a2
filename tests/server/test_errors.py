"""Error answers: each status maps to the openai SDK's exception class; no 500 from client input."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from failover.errors import InvalidRequest
from failover.mock_upstream import MockUpstream
from failover.server.surfaces.chat_checks import parse_chat
from tests.server.helpers import CLIENT_KEY, MESSAGES, UPSTREAM_KEY, gateway_config, running

Mocks = tuple[MockUpstream, MockUpstream]


def _error_shape(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


async def test_every_attempt_failing_is_502_without_retry(mocks: Mocks) -> None:
    """Both targets answering 500: 502 with the last class as code, and x-should-retry false."""
    main, fallback = mocks
    for mock in mocks:
        mock.set_profile(error_rate=1.0, error_status=(500,))
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
    error = caught.value
    assert error.status_code == 502
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-request-id"].startswith("req_")
    assert _error_shape(error.body and {"error": error.body})["code"] == "server_error"
    assert UPSTREAM_KEY not in error.response.text


async def test_rate_limited_everywhere_is_503_with_retry_after(mocks: Mocks) -> None:
    """Both targets answering 429: 503 with Retry-After (the soonest), not retried."""
    main, fallback = mocks
    for mock in mocks:
        mock.set_profile(rate_limit_share=1.0, retry_after=7)
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
        # Both now cool down: the next request is one early probe (rule 1), still 503.
        with pytest.raises(openai.APIStatusError) as again:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert again.value.status_code == 503
    assert 1 <= int(again.value.response.headers["retry-after"]) <= 7
    assert main.stats.requests + fallback.stats.requests == 3


async def test_deadline_is_504(mocks: Mocks) -> None:
    """Both targets hanging past the route's deadline: 504 deadline_exceeded."""
    main, fallback = mocks
    main.set_profile("hanging")
    fallback.set_profile("hanging")
    config = gateway_config(main, fallback, hedge_after=0.05, deadline=0.3)
    async with running(config) as gw, gw.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert caught.value.code == "deadline_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_provider_bad_request_is_answered_as_worded(mocks: Mocks) -> None:
    """A provider's 400 reaches the client as the provider worded it (rule 9)."""
    main, fallback = mocks
    main.set_profile(error_rate=1.0, error_code="invalid_value")
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
    assert caught.value.code == "invalid_value"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert fallback.stats.requests == 0


async def test_unknown_model_is_404(mocks: Mocks) -> None:
    """A model that is neither a route nor a deployment: NotFoundError, nothing tried."""
    main, fallback = mocks
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert main.stats.requests == fallback.stats.requests == 0


_VALID = {"model": "intent", "messages": MESSAGES}

BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    ("not json", b"{model: intent}", None),
    ("empty body", b"", None),
    ("not utf-8", b'{"model": "\xff\xfe"}', None),
    ("lone surrogate", b'{"model": "intent", "x": "\\ud800"}', None),
    ("too deep", b"[" * 2000 + b"]" * 2000, None),
    ("array", b"[]", None),
    ("missing model", json.dumps({"messages": MESSAGES}).encode(), "model"),
    ("model not a string", json.dumps({**_VALID, "model": 7}).encode(), "model"),
    ("empty model", json.dumps({**_VALID, "model": ""}).encode(), "model"),
    ("missing messages", json.dumps({"model": "intent"}).encode(), "messages"),
    ("messages not a list", json.dumps({**_VALID, "messages": "hi"}).encode(), "messages"),
    ("empty messages", json.dumps({**_VALID, "messages": []}).encode(), "messages"),
    ("message not an object", json.dumps({**_VALID, "messages": ["hi"]}).encode(), "messages[0]"),
    (
        "message without role",
        json.dumps({**_VALID, "messages": [{"content": "hi"}]}).encode(),
        "messages[0].role",
    ),
    (
        "unknown role",
        json.dumps({**_VALID, "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
        "messages[0].role",
    ),
    (
        "content a number",
        json.dumps({**_VALID, "messages": [{"role": "user", "content": 3}]}).encode(),
        "messages[0].content",
    ),
    (
        "user without content",
        json.dumps({**_VALID, "messages": [{"role": "user"}]}).encode(),
        "messages[0].content",
    ),
    ("negative max_tokens", json.dumps({**_VALID, "max_tokens": -1}).encode(), "max_tokens"),
    ("zero max_tokens", json.dumps({**_VALID, "max_tokens": 0}).encode(), "max_tokens"),
    ("absurd max_tokens", json.dumps({**_VALID, "max_tokens": 10**7}).encode(), "max_tokens"),
    ("max_tokens a string", json.dumps({**_VALID, "max_tokens": "5"}).encode(), "max_tokens"),
    ("max_tokens a bool", json.dumps({**_VALID, "max_tokens": True}).encode(), "max_tokens"),
    ("huge integer", b'{"model": "intent", "messages": [], "n": 1' + b"0" * 30 + b"}", None),
    ("stream not a bool", json.dumps({**_VALID, "stream": "yes"}).encode(), "stream"),
    ("temperature too hot", json.dumps({**_VALID, "temperature": 5}).encode(), "temperature"),
    ("top_p a string", json.dumps({**_VALID, "top_p": "1"}).encode(), "top_p"),
    ("five stops", json.dumps({**_VALID, "stop": ["a", "b", "c", "d", "e"]}).encode(), "stop"),
    ("tools not a list", json.dumps({**_VALID, "tools": {"type": "function"}}).encode(), "tools"),
    (
        "tool without name",
        json.dumps({**_VALID, "tools": [{"type": "function", "function": {}}]}).encode(),
        "tools[0].function",
    ),
    ("n zero", json.dumps({**_VALID, "n": 0}).encode(), "n"),
]


@pytest.mark.parametrize(
    ("body", "param"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_parse_chat_refuses(body: bytes, param: str | None) -> None:
    """Each malformed body is an InvalidRequest naming the field at fault."""
    with pytest.raises(InvalidRequest) as caught:
        parse_chat(body)
    if param is not None:
        assert caught.value.param == param


def test_parse_chat_passes_unknown_fields_through() -> None:
    """Fields failover does not know reach the provider untouched; null means the default."""
    call = parse_chat(
        json.dumps({**_VALID, "stream": None, "top_k": 5, "max_tokens": None}).encode()
    )
    assert call.stream is False
    assert dict(call.request.params) == {"top_k": 5, "max_tokens": None}


async def test_bad_input_never_500(mocks: Mocks) -> None:
    """Each bad request over HTTP gets its 4xx status and an OpenAI-shaped error, never a 500."""
    main, fallback = mocks
    config = gateway_config(main, fallback, server={"max_body_bytes": 4096})
    auth = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    chat = "/v1/chat/completions"
    cases: list[tuple[str, str, bytes, int]] = [
        *(("POST", chat, body, 400) for _, body, _ in BAD_BODIES),
        ("POST", chat, json.dumps({**_VALID, "model": "nope"}).encode(), 404),
        ("POST", chat, b'{"model": "intent", "x": "' + b"a" * 5000 + b'"}', 413),
        ("GET", chat, b"", 405),
        ("PUT", chat, b"{}", 405),
        ("POST", "/v1/models", b"{}", 405),
        ("DELETE", "/health", b"", 405),
        ("GET", "/v1/nothing", b"", 404),
        ("GET", "/", b"", 404),
        ("POST", "/v1/chat/completions/", json.dumps(_VALID).encode(), 404),
    ]
    async with running(config) as gw, aiohttp.ClientSession() as session:
        for method, path, body, status in cases:
            async with session.request(
                method, f"{gw.origin}{path}", data=body, headers=auth
            ) as response:
                assert (method, path, body[:60], response.status) == (
                    method,
                    path,
                    body[:60],
                    status,
                )
                assert response.content_type == "application/json"
                _error_shape(await response.json())
                if status == 405:
                    assert "GET" in response.headers["allow"] or "POST" in response.headers["allow"]

        # A body sent in chunks without a Content-Length is counted as it is read.
        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        async with session.post(f"{gw.url}/chat/completions", data=chunks(), headers=auth) as big:
            assert big.status == 413
    assert main.stats.requests == 0
