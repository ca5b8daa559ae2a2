"""No secret leaves the gateway during a whole (short) chaos soak, in any output.

The soak of ``bench/soak.py`` runs ~18 s in this process against providers behind key gates:
each gate checks ``Authorization: Bearer <key>`` and, like a careless provider, quotes the key in
every error it answers; deployment ``c`` is configured with a key its gate refuses (401). Clients
send a client key; the gateway keeps a request log (SQLite), metrics, log and webhook alerts, and
OTLP traces to a local receiver. Then every output is searched for every key, its base64 and its
``Bearer`` form: log records (DEBUG and up), what clients read (status, headers, body), the
request log's tables, ``/metrics``, webhook bodies and the protobuf bytes of the spans.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from failover.mock_upstream import MockUpstream
from tests.bench.test_soak import load_soak
from tests.observe.conftest import serve_app

PROVIDER_KEYS = {
    "a": "sk-live-SoakProviderKeyA-7f3k2QmZ",
    "b": "sk-ant-api03-SoakProviderKeyB-9q1xWv",
    "c": "gsk_SoakProviderKeyC_refused_4t8Lp",
}
CLIENT_KEY = "sk-client-SoakClientKey-3m5nR8"
ADMIN_KEY = "sk-admin-SoakAdminKey-8p2wT6"
WEBHOOK_TOKEN = "hook-T0ken-SoakWebhook-5h7j"
SECRETS = [*PROVIDER_KEYS.values(), CLIENT_KEY, ADMIN_KEY, WEBHOOK_TOKEN]
SECONDS = 18.0  # one fault cycle: errors, hangs, a 429 storm, both providers hanging at once


def forms(secret: str) -> list[str]:
    """The ways a secret may be written out: itself, base64 (both alphabets), as a header."""
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        f"Bearer {secret}",
    ]


class KeyGate:
    """A provider's front door on 127.0.0.1: it checks the key, forwards to ``upstream`` (none:
    refuse every request) and quotes the key it was sent in each error it answers."""

    def __init__(self, key: str, upstream: str | None) -> None:
        self.key = key
        self.upstream = upstream
        self.accepted = 0
        self.refused = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if sent != self.key or self.upstream is None:
            self.refused += 1
            return self._error(401, f"Incorrect API key provided: {sent}", "invalid_api_key")
        self.accepted += 1
        assert self._session is not None
        async with self._session.post(
            f"{self.upstream}/chat/completions",
            data=await request.read(),
            headers={"Content-Type": "application/json"},
        ) as answer:
            if answer.status >= 400:
                keep = {k: v for k, v in answer.headers.items() if k.lower().startswith("retry")}
                message = f"{await answer.text()} (request made with key {sent})"
                return self._error(answer.status, message, "upstream_error", keep)
            response = web.StreamResponse(
                status=answer.status, headers={"Content-Type": answer.content_type}
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    @staticmethod
    def _error(
        status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        return web.json_response(body, status=status, headers=headers)

    async def __aenter__(self) -> KeyGate:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, base = await serve_app(app)
        self.url = f"{base}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


class Recorder:
    """An HTTP receiver on 127.0.0.1 that keeps every body POSTed to it (webhook, OTLP)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.origin = ""
        self._runner: web.AppRunner | None = None

    async def _keep(self, request: web.Request) -> web.Response:
        kind = "otlp" if request.path == "/v1/traces" else "webhook"
        self.bodies.setdefault(kind, []).append(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def __aenter__(self) -> Recorder:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._keep)
        self._runner, self.origin = await serve_app(app)  # no access log: it would quote the token
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def gateway_config(
    soak: Any, gates: dict[str, KeyGate], recorder: Recorder, tmp_path: Path
) -> dict[str, Any]:
    """The soak's config over the gates, with every output on and ``c`` first on one route."""
    config: dict[str, Any] = soak.config({name: gates[name].url for name in ("a", "b")})
    for name, key in PROVIDER_KEYS.items():
        base = config["deployments"].get(name, config["deployments"]["a"])
        config["deployments"][name] = {**base, "api_base": gates[name].url, "api_key": key}
    sequential = config["routes"]["sequential"]
    config["routes"]["sequential"] = {**sequential, "targets": ["c", "a", "b"]}
    config["server"] = {"api_keys": [CLIENT_KEY], "admin_key": ADMIN_KEY}
    config["store"] = {"url": f"sqlite:///{tmp_path / 'requests.db'}"}
    config["alerts"] = [
        {"kind": "log", "dedup_seconds": 0},
        {"kind": "webhook", "url": f"{recorder.origin}/hook/{WEBHOOK_TOKEN}", "dedup_seconds": 0},
    ]
    config["telemetry"] = {"otlp_endpoint": recorder.origin}
    return config


def request_log(path: Path) -> dict[str, list[str]]:
    """Every row of every table of the SQLite request log, as text, by table."""
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            table: [repr(row) for row in db.execute(f'SELECT * FROM "{table}"')] for table in tables
        }


def span_count(bodies: list[bytes]) -> tuple[int, str]:
    """Spans in OTLP/HTTP bodies, and the bodies decoded to protobuf text."""
    count, text = 0, []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        text.append(str(request))
        for resource in request.resource_spans:
            count += sum(len(scope.spans) for scope in resource.scope_spans)
    return count, "\n".join(text)


@pytest.fixture
async def gates() -> AsyncIterator[tuple[dict[str, MockUpstream], dict[str, KeyGate]]]:
    """Mocks ``a`` and ``b`` behind key gates, and a gate ``c`` that refuses its key."""
    async with (
        MockUpstream(name="a", seed=1) as a,
        MockUpstream(name="b", seed=2) as b,
        KeyGate(PROVIDER_KEYS["a"], a.url) as gate_a,
        KeyGate(PROVIDER_KEYS["b"], b.url) as gate_b,
        KeyGate("the-key-c-really-has", None) as gate_c,
    ):
        yield {"a": a, "b": b}, {"a": gate_a, "b": gate_b, "c": gate_c}


@pytest.mark.slow
async def test_no_secret_in_any_output_of_a_soak(
    gates: tuple[dict[str, MockUpstream], dict[str, KeyGate]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys quoted by providers, sent by clients or in URLs reach no output of an 18 s soak."""
    soak = load_soak()
    mocks, gate = gates
    bodies: list[str] = []
    run = soak.Run(SECONDS, SECONDS)
    async with Recorder() as recorder:
        config = gateway_config(soak, gate, recorder, tmp_path)
        with caplog.at_level(logging.DEBUG):
            extra = await soak.drive(
                mocks,
                config,
                run,
                rate=40.0,
                seed=3,
                headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                bodies=bodies,
            )
    log = request_log(tmp_path / "requests.db")
    spans, spans_text = span_count(recorder.bodies.get("otlp", []))
    webhook = recorder.bodies.get("webhook", [])
    lines = [caplog.text, *(str(r.args) for r in caplog.records)]
    outputs: dict[str, bytes] = {
        "log": "\n".join(lines).encode(),
        "client answers": "\n".join(bodies).encode(),
        "request log": repr(log).encode(),
        "metrics": extra["metrics"].encode(),
        "webhook": b"\n".join(webhook),
        "spans (protobuf)": b"\n".join(recorder.bodies.get("otlp", [])),
        "spans (decoded)": spans_text.encode(),
    }
    # Not vacuous: the keys were really sent and refused, and every output holds plenty.
    assert gate["a"].accepted > 100
    assert gate["b"].accepted > 100
    assert gate["a"].refused == gate["b"].refused == 0
    assert gate["c"].refused >= 3
    assert len(caplog.records) > 100
    assert len(bodies) > 400
    assert sum(not body.startswith("200 ") for body in bodies) > 10  # error answers too
    assert len(log["requests"]) > 400
    assert len(log["attempts"]) > 400
    assert any("'auth', 401" in row for row in log["attempts"])  # c's refusals, recorded
    assert "failover_requests_total" in extra["metrics"]
    assert len(webhook) >= 3
    assert b"auth_failed" in b"".join(webhook)
    assert spans > 800
    assert not [r for r in run.results if r.status == 500]
    for name, text in outputs.items():
        for secret in SECRETS:
            for form in forms(secret):
                assert form.encode() not in text, f"{form!r} (of {secret!r}) found in the {name}"
