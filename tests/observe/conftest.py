"""Fixtures of the observability tests: stores (SQLite in tmp_path, the real PostgreSQL),
configs over `MockUpstream` servers, and a webhook receiver on 127.0.0.1.

Each PostgreSQL test gets a schema of its own (``search_path`` in the URL), dropped afterwards;
nothing else in the ``test`` database is touched.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from failover.mock_upstream import MockUpstream
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT, require_service

SECRET_KEY = "sk-live-0bservab1l1tyS3cretKey42"
"""A provider key the tests look for everywhere it must not be."""

POSTGRES_BASE = f"postgresql://{POSTGRES_HOST}:{POSTGRES_PORT}/test"


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A PostgreSQL URL whose tables land in a schema of this test's own (dropped after)."""
    require_service("postgresql", POSTGRES_HOST, POSTGRES_PORT)
    schema = f"failover_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(POSTGRES_BASE)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    yield f"{POSTGRES_BASE}?search_path={schema}"
    connection = await asyncpg.connect(POSTGRES_BASE)
    try:
        await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'requests.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store backend in turn (PostgreSQL with a schema of the test's own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'requests.db'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def mocks() -> AsyncIterator[tuple[MockUpstream, MockUpstream]]:
    async with (
        MockUpstream("healthy", name="main", seed=1) as main,
        MockUpstream("healthy", name="fallback", seed=2) as fallback,
    ):
        yield main, fallback


def gateway_config(
    main: MockUpstream,
    fallback: MockUpstream,
    *,
    store: str = "none",
    alerts: list[dict[str, Any]] | None = None,
    **route: Any,
) -> dict[str, Any]:
    """Two deployments over the mocks and one route ``intent``, with priced tokens."""
    deployment = {"provider": "openai-compatible", "api_key": SECRET_KEY, "max_retries": 0}
    return {
        "health": {"check_on_startup": False},
        "store": {"url": store},
        "alerts": alerts if alerts is not None else [{"kind": "log"}],
        "deployments": {
            "main": {
                **deployment,
                "model": "m",
                "api_base": main.url,
                "timeout": 5,
                "price": {"input": 1.0, "output": 2.0},
            },
            "fallback": {
                **deployment,
                "model": "f",
                "api_base": fallback.url,
                "timeout": 5,
                "price": {"input": 10.0, "output": 20.0},
            },
        },
        "routes": {"intent": {"targets": ["main", "fallback"], **route}},
    }


class WebhookReceiver:
    """An aiohttp server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.Response(text="ok")

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook/{token}", self._receive)
        self._runner, base = await serve_app(app)
        self.url = f"{base}/hook/T0KEN-in-the-url"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` served on 127.0.0.1 (a free port, no access log: its lines could quote secrets,
    handlers cancelled when their client leaves); its runner, to clean up, and base URL."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


async def poll_until(
    condition: Callable[[], bool], *, tries: int = 200, every: float = 0.01
) -> None:
    """Check ``condition`` every ``every`` seconds until it holds, ``tries`` times at most.

    It never fails by itself: the assertions after it say what the test expected.
    """
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(every)
