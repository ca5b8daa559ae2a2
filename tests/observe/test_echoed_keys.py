"""A provider that echoes the key it was sent, in every field of its 400: no part of it leaves.

The route is ``intent`` over ``down`` (a 503) then ``echo``: ``echo`` answers 400, quoting the
``Authorization`` key it got in the error's ``type``, ``code`` or ``param``, or in a plain-text
body where the key straddles the 1,000-character message bound or the 64 KiB read bound. Through
the real server (uvicorn, the raw ASGI app) with the official ``openai`` SDK as the client, the
client's answer (status line, headers, body), every log record (the alert a 400 from a second
target raises included), the request's record (``GET /v1/requests/{id}``) and the request log's
SQLite tables are searched for the key and for its first 12 characters.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests.observe.conftest import serve_app
from tests.server.helpers import ADMIN_KEY, CLIENT_KEY, MESSAGES, running

# A key of no known shape (a self-hosted server's --api-key): only redaction of the whole text by
# the deployment's own redactor can keep it out, no pattern would.
ECHOED_KEY = "vllm-Zq7Hq2Zp9Xw4Lm8Rt3Yb6Nc1Vd5"
OTHER_KEY = "sk-live-DownProviderKey-4Jr8Tz"
READ_BOUND = 64 * 1024  # what the upstream client reads of an error body


def _text_around(key: str, position: int, size: int) -> bytes:
    """``size`` bytes of plain text with ``key`` starting at ``position`` (words before it)."""
    words = ("the request is invalid " * (position // 23 + 1))[:position]
    tail = " " + "more words " * (size // 11 + 1)
    return (words + key + tail).encode()[:size]


FORGED = "Invalid 'temperature'.\nCRITICAL fake: every provider is down\x1b[2J\r\u2028(end)"
"""A 400 message made to forge a log line and clear the screen (a client can steer it)."""


def _answer(mode: str, key: str) -> web.Response:
    """The 400 ``mode`` names, quoting ``key`` (``forged``: a message with :data:`FORGED`)."""
    if mode == "forged":
        error = {"message": FORGED, "type": "invalid_request_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=400)
    if mode == "text-1000":
        # The key begins 12 characters before the message bound: its first 12 would be kept.
        return web.Response(
            status=400, body=_text_around(key, 988, 1500), content_type="text/plain"
        )
    if mode == "text-64k":
        # Blank padding collapses to nothing: what is left of the message is the cut key.
        body = b" " * (READ_BOUND - 14) + key.encode() + b" end"
        return web.Response(status=400, body=body, content_type="text/plain")
    error: dict[str, Any] = {
        "message": "Invalid value for 'temperature'.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": None,
    }
    field = mode.removeprefix("json-")
    error[field] = f"{error[field] or field} (key {key})"
    return web.json_response({"error": error}, status=400)


class EchoingProvider:
    """An OpenAI-compatible provider on 127.0.0.1 that answers every chat 400 as ``mode`` says,
    quoting the bearer key it was sent; ``mode = "down"`` answers 503. ``url`` ends in ``/v1``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        await request.read()
        if self.mode == "down":
            return web.json_response(
                {"error": {"message": "overloaded", "type": "server_error"}}, status=503
            )
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return _answer(self.mode, sent)

    async def __aenter__(self) -> EchoingProvider:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, base = await serve_app(app)
        self.url = f"{base}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def down() -> AsyncIterator[EchoingProvider]:
    async with EchoingProvider("down") as provider:
        yield provider


def route_config(down: EchoingProvider, echo: EchoingProvider, store: str) -> dict[str, Any]:
    """Route ``intent`` over ``down`` then ``echo``, alerts to the log, with clients and admin."""
    deployment = {"provider": "openai-compatible", "max_retries": 0, "timeout": 10}
    return {
        "server": {"api_keys": [CLIENT_KEY], "admin_key": ADMIN_KEY},
        "health": {"check_on_startup": False},
        "store": {"url": store},
        "alerts": [{"kind": "log", "dedup_seconds": 0}],
        "deployments": {
            "down": {**deployment, "model": "d", "api_base": down.url, "api_key": OTHER_KEY},
            "echo": {**deployment, "model": "e", "api_base": echo.url, "api_key": ECHOED_KEY},
        },
        "routes": {"intent": {"targets": ["down", "echo"]}},
    }


def _leaks(text: str) -> list[str]:
    return [part for part in (ECHOED_KEY, ECHOED_KEY[:12]) if part in text]


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines)


@pytest.mark.parametrize("mode", ["json-type", "json-code", "json-param", "text-1000", "text-64k"])
async def test_an_echoed_key_reaches_no_answer_log_or_record(
    mode: str, down: EchoingProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The client's 400, the log (alert included) and the record hold no part of the key."""
    store = f"sqlite:///{tmp_path / 'requests.db'}"
    async with EchoingProvider(mode) as echo:
        with caplog.at_level(logging.DEBUG):
            async with running(route_config(down, echo, store)) as gw:
                async with gw.client() as client:
                    with pytest.raises(openai.BadRequestError) as caught:
                        await client.chat.completions.create(model="intent", messages=MESSAGES)
                async with gw.client(ADMIN_KEY) as admin:
                    request_id = caught.value.response.headers["x-request-id"]
                    record = await admin.get(f"/requests/{request_id}", cast_to=object)
        assert (down.calls, echo.calls) == (1, 1)
    response = caught.value.response
    answer = f"{response.status_code} {dict(response.headers)} {response.text}"
    assert response.status_code == 400
    assert _leaks(answer) == [], answer
    assert _leaks(orjson.dumps(record).decode()) == []
    log = _log_text(caplog)
    assert "bad_request_translation" in log  # the alert that quotes the provider's words
    assert _leaks(log) == [], log
    with sqlite3.connect(tmp_path / "requests.db") as db:
        tables = [
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        rows = [repr(db.execute(f'SELECT * FROM "{name}"').fetchall()) for name in tables]
    assert rows
    assert _leaks("\n".join(rows)) == []
