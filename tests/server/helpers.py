"""Shared by the server tests: a gateway config over mock upstreams, and the server running it.

:func:`running` starts the real server (uvicorn, httptools, the raw ASGI app) in the test's own
event loop on a free loopback port, in front of :class:`~failover.mock_upstream.MockUpstream`
servers; clients are the official ``openai`` SDK (``max_retries=0``) or aiohttp for what the SDK
cannot send (invalid JSON, odd headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import uvicorn
import yaml

from failover import Gateway
from failover.call import FinishedHook
from failover.config import config_from_dict
from failover.mock_upstream import MockUpstream
from failover.server import GatewayApp, uvicorn_config
from failover.server.serving import bind_socket

CLIENT_KEY = "sk-client-test-0001"
ADMIN_KEY = "sk-admin-test-0002"
UPSTREAM_KEY = "sk-upstream-secret-0003"
MESSAGES = [{"role": "user", "content": "hello there"}]


def gateway_config(
    main: MockUpstream,
    fallback: MockUpstream,
    *,
    server: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    timeout: float = 5.0,
    **route: Any,
) -> dict[str, Any]:
    """Route ``intent`` over ``main`` then ``fallback`` (no retries), with ``route``'s options."""
    deployment = {
        "provider": "openai-compatible",
        "api_key": UPSTREAM_KEY,
        "max_retries": 0,
        "timeout": timeout,
    }
    config: dict[str, Any] = {
        "server": {"api_keys": [CLIENT_KEY], "admin_key": ADMIN_KEY, **(server or {})},
        "health": {"check_on_startup": False},
        "store": {"url": "none"},
        "deployments": {
            "main": {**deployment, "model": "m", "api_base": main.url},
            "fallback": {**deployment, "model": "f", "api_base": fallback.url},
        },
        "routes": {"intent": {"targets": ["main", "fallback"], **route}},
    }
    if state is not None:
        config["state"] = state
    return config


class QuietServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the test runner keeps its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Running:
    """A gateway being served: its base URL (``/v1`` included), the app, the uvicorn server."""

    url: str
    app: GatewayApp
    server: uvicorn.Server

    @property
    def origin(self) -> str:
        return self.url.removesuffix("/v1")

    def client(self, key: str | None = CLIENT_KEY, **options: Any) -> openai.AsyncOpenAI:
        """The official SDK pointed at the gateway; never retries by itself."""
        return openai.AsyncOpenAI(
            base_url=self.url, api_key=key or "none", max_retries=0, **options
        )


@contextlib.asynccontextmanager
async def running(
    config: dict[str, Any], hook: FinishedHook | None = None, **app_options: Any
) -> AsyncIterator[Running]:
    """Serve ``config`` on a free loopback port until the block ends (then drain and close);
    ``hook`` is told of each finished request (the gateway's ``on_finished``)."""
    app = GatewayApp(Gateway(config_from_dict(config, env={}), on_finished=hook), **app_options)
    sock = bind_socket("127.0.0.1", 0)
    server = QuietServer(uvicorn_config(app, drain_seconds=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: say why
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.005)
        yield Running(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", app, server)
    finally:
        server.should_exit = True
        await task


async def wait_for(predicate: Any, seconds: float = 2.0) -> bool:
    """Poll ``predicate()`` until it is true or ``seconds`` passed; its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as YAML into ``tmp_path``; its path."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def serve_process(
    path: Path, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``failover serve`` in a subprocess; yields it and its URL once it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "failover.cli",
        "serve",
        "--config",
        str(path),
        "--port",
        "0",
        *extra,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        url = ""
        while not url:
            line = (await asyncio.wait_for(process.stderr.readline(), 15)).decode()
            assert line, "the gateway exited before it listened"
            if found := re.search(r"listening on (http://\S+)", line):
                url = found.group(1)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
