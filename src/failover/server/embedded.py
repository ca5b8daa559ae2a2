"""The gateway served inside a running event loop, for the demo and for tests.

``failover serve`` owns its process (signals, workers, drain on SIGTERM); :func:`serving` instead
runs the same app and uvicorn server as a task of the caller's loop, on a free loopback port, and
drains and closes it when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import Any

import uvicorn

from failover.gateway import Gateway
from failover.server.app import GatewayApp
from failover.server.serving import bind_socket, uvicorn_config

__all__ = ["EmbeddedServer", "serving"]


class _Quiet(uvicorn.Server):
    """uvicorn's server without its signal handlers: the embedding program keeps its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A gateway being served: its base URL (``/v1`` included) and its app."""

    url: str
    app: GatewayApp

    @property
    def origin(self) -> str:
        return self.url.removesuffix("/v1")


@contextlib.asynccontextmanager
async def serving(
    gateway: Gateway,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    drain_seconds: float = 5.0,
    **app_options: Any,
) -> AsyncIterator[EmbeddedServer]:
    """Serve ``gateway`` until the block ends; the app owns and closes the gateway.

    >>> async def main(gateway: Gateway) -> None:  # doctest: +SKIP
    ...     async with serving(gateway) as server:
    ...         print(server.url)          # http://127.0.0.1:PORT/v1
    """
    app = GatewayApp(gateway, **app_options)
    sock = bind_socket(host, port)
    server = _Quiet(uvicorn_config(app, drain_seconds=drain_seconds))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: say why
                raise RuntimeError("the gateway server stopped before it started")
            await asyncio.sleep(0.005)
        bound_host, bound_port = sock.getsockname()[:2]
        yield EmbeddedServer(f"http://{bound_host}:{bound_port}/v1", app)
    finally:
        server.should_exit = True
        await task
