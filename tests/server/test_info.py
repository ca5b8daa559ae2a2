"""The read-only endpoints: /v1/models, /v1/status, /health, /ready and /openapi.json."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import openai
import pytest
import uvicorn

from failover import Gateway
from failover.config import config_from_dict
from failover.mock_upstream import MockUpstream
from failover.server import GatewayApp, Phase, key_id
from failover.server.openapi import openapi_document
from tests.server.helpers import (
    ADMIN_KEY,
    CLIENT_KEY,
    MESSAGES,
    UPSTREAM_KEY,
    QuietServer,
    gateway_config,
    running,
    wait_for,
)

Mocks = tuple[MockUpstream, MockUpstream]


async def test_models_with_the_sdk(mocks: Mocks) -> None:
    """models.list() sees the routes first, then the deployments; retrieve() is not served."""
    main, fallback = mocks
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        page = await client.models.list()
        models = [(m.id, m.owned_by, m.object) for m in page.data]
        intent = page.data[0].model_dump()
    assert models == [
        ("intent", "failover", "model"),
        ("main", "openai-compatible", "model"),
        ("fallback", "openai-compatible", "model"),
    ]
    assert intent["kind"] == "route"
    assert intent["targets"] == ["main", "fallback"]


async def test_status_rows(mocks: Mocks) -> None:
    """/v1/status has one health row per deployment, and reflects what happened."""
    main, fallback = mocks
    main.set_profile("down")
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        await client.chat.completions.create(model="intent", messages=MESSAGES)
        status = await client.get("/status", cast_to=object)
    assert isinstance(status, dict)
    assert status["object"] == "list"
    rows = {row["deployment"]: row for row in status["data"]}
    assert list(rows) == ["main", "fallback"]
    assert rows["main"]["state"] == "available"
    assert rows["main"]["consecutive_failures"] == 1
    assert rows["main"]["last_error"] == "server_error"
    assert rows["fallback"]["success_rate"] == 1.0
    assert set(rows["fallback"]["latency"]) == {"p50", "p95", "p99"}


async def test_health_and_ready(mocks: Mocks) -> None:
    """/health and /ready answer without a key, HEAD included."""
    main, fallback = mocks
    async with running(gateway_config(main, fallback)) as gw, aiohttp.ClientSession() as session:
        async with session.get(f"{gw.origin}/health") as health:
            assert (health.status, await health.json()) == (200, {"status": "ok"})
        async with session.get(f"{gw.origin}/ready") as ready:
            assert (ready.status, await ready.json()) == (200, {"status": "ready"})
        async with session.head(f"{gw.origin}/ready") as head:
            assert head.status == 200
        async with session.get(f"{gw.origin}/openapi.json") as document:
            assert (await document.json())["openapi"] == "3.1.0"
    assert gw.app.phase is Phase.DRAINING  # after the shutdown


async def test_ready_turns_503_while_draining(mocks: Mocks) -> None:
    """Draining: /ready says 503 while an in-flight request still completes."""
    main, fallback = mocks
    main.set_profile(latency="0.5")
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        answer = asyncio.ensure_future(
            client.chat.completions.create(model="intent", messages=MESSAGES)
        )
        assert await wait_for(lambda: main.stats.in_flight == 1)
        gw.app.begin_drain()
        async with aiohttp.ClientSession() as session, session.get(f"{gw.origin}/ready") as ready:
            assert (ready.status, await ready.json()) == (503, {"status": "draining"})
        completion = await answer
    assert completion.choices[0].message.content == "Hello from main. This is a mock answer."


async def test_ready_is_503_until_started(mocks: Mocks) -> None:
    """Before its start-up has run, the app says 503 starting (here: lifespan off)."""
    main, fallback = mocks
    app = GatewayApp(Gateway(config_from_dict(gateway_config(main, fallback), env={})))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, lifespan="off", http="httptools", log_config=None)
        server = QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            assert await wait_for(lambda: server.started)
            port = sock.getsockname()[1]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/ready") as ready,
            ):
                assert (ready.status, await ready.json()) == (503, {"status": "starting"})
        finally:
            server.should_exit = True
            await task
            await app.aclose()


async def test_startup_callables_run_before_ready(mocks: Mocks) -> None:
    """Start-up callables run before ready; one that fails leaves the app unready."""
    main, fallback = mocks
    calls: list[str] = []

    async def probe() -> None:
        calls.append("probe")

    async def broken() -> None:
        raise RuntimeError("no")

    config = config_from_dict(gateway_config(main, fallback), env={})
    app = GatewayApp(Gateway(config), on_startup=[probe])
    assert app.phase is Phase.STARTING
    await app.startup()
    assert (calls, app.phase) == (["probe"], Phase.READY)
    await app.aclose()
    assert app.phase is Phase.DRAINING
    assert "routes=3" in repr(app)
    failing = GatewayApp(Gateway(config), on_startup=[broken])
    with pytest.raises(RuntimeError):
        await failing.startup()
    assert failing.phase is Phase.STARTING
    await failing.aclose()


def test_openapi_document_names_every_model(mocks: Mocks) -> None:
    """The document lists the config's models and every path the app serves."""
    main, fallback = mocks
    config = config_from_dict(gateway_config(main, fallback), env={})
    document = openapi_document(config)
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    assert request["properties"]["model"]["enum"] == ["intent", "main", "fallback"]
    assert set(document["paths"]) == {
        "/v1/chat/completions",
        "/v1/models",
        "/v1/status",
        "/health",
        "/ready",
        "/openapi.json",
        "/metrics",
        "/v1/requests/{request_id}",
    }
    assert CLIENT_KEY not in str(document)


async def test_sdk_errors_carry_the_request_id(mocks: Mocks) -> None:
    """An error answer after failover tried names failover's request id."""
    main, fallback = mocks
    main.set_profile("down")
    fallback.set_profile("down")
    async with running(gateway_config(main, fallback)) as gw, gw.client() as client:
        try:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
        except openai.APIStatusError as error:
            request_id = error.response.headers["x-request-id"]
        else:
            raise AssertionError("every target is down: the request must fail")
    assert request_id.startswith("req_")


async def test_request_records_by_id(mocks: Mocks, tmp_path: Path) -> None:
    """A client reads its own request's record; the admin reads any; others see none."""
    main, fallback = mocks
    other = "sk-client-test-other"
    config = gateway_config(main, fallback, server={"api_keys": [CLIENT_KEY, other]})
    config["store"] = {"url": f"sqlite:///{tmp_path / 'requests.db'}"}
    async with running(config) as gw:
        async with gw.client() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="intent", messages=MESSAGES, extra_headers={"x-request-id": "mine-7"}
            )
            request_id = raw.headers["x-request-id"]
            record = await client.get(f"/requests/{request_id}", cast_to=object)
            with pytest.raises(openai.NotFoundError):
                await client.get("/requests/req_nothing", cast_to=object)
        async with gw.client(ADMIN_KEY) as admin:
            assert await admin.get(f"/requests/{request_id}", cast_to=object) == record
        async with gw.client(other) as stranger:
            with pytest.raises(openai.NotFoundError):
                await stranger.get(f"/requests/{request_id}", cast_to=object)
    assert isinstance(record, dict)
    assert record["route"] == "intent"
    assert record["client_request_id"] == "mine-7"
    assert record["client_key_id"] == key_id(CLIENT_KEY)
    assert [(a["deployment"], a["outcome"]) for a in record["attempts"]] == [("main", "success")]
    assert CLIENT_KEY not in str(record)


async def test_metrics(mocks: Mocks) -> None:
    """/metrics serves Prometheus text to a client with a key, and counts the requests."""
    main, fallback = mocks
    async with running(gateway_config(main, fallback)) as gw:
        async with gw.client() as client:
            await client.chat.completions.create(model="intent", messages=MESSAGES)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gw.origin}/metrics") as refused:
                assert refused.status == 401
            headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
            async with session.get(f"{gw.origin}/metrics", headers=headers) as metrics:
                assert metrics.status == 200
                assert metrics.content_type == "text/plain"
                text = await metrics.text()
    assert 'route="intent"' in text
    assert UPSTREAM_KEY not in text
