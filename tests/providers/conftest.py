"""A fake upstream over real loopback HTTP, and the shared client the adapters run on.

``FakeUpstream`` is an aiohttp.web server on 127.0.0.1, port 0. Each test sets ``handler`` (what
to answer) and reads ``requests`` (what the adapter really sent). Handlers are cancelled when
the client drops the connection (``handler_cancellation``), so ``disconnected`` tells a test
that the adapter closed the upstream connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import uvloop
from aiohttp import web
from multidict import CIMultiDictProxy

from failover.config import DeploymentConfig, Provider
from failover.errors import UpstreamError
from failover.providers import ChatProvider, HttpClient
from failover.types import ChatRequest
from tests.providers.shapes import GOOGLE_KEY, KEY, Case

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test here runs on both loops: production runs on uvloop, whose transports
    differ from asyncio's in ways the upstream client must not notice."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    peer: object = None  # the client's (host, port): the same port means a reused connection

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeUpstream:
    """A scripted provider: answers with ``handler``, records every request."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    handler: Handler | None = None
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                request.headers,
                body,
                request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        self.received.set()
        assert self.handler is not None, "the test set no handler"
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client closes the connection.
            self.disconnected.set()
            raise

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    async def wait_disconnected(self) -> None:
        """Return once the adapter has closed its connection (fail after 5 s)."""
        await asyncio.wait_for(self.disconnected.wait(), 5)

    async def assert_complete_raises(
        self, chat: ChatProvider, request: ChatRequest, case: Case, name: str
    ) -> None:
        """complete() against the case's real answer raises what :func:`assert_case` expects."""
        self.handler = case_answer(case)
        with pytest.raises(UpstreamError) as caught:
            await chat.complete(request)
        assert_case(caught.value, case, name)

    async def probe_request(self, chat: ChatProvider, models: Any) -> Recorded:
        """The request probe() sent while this fake lists ``models``; it must be GET /models."""
        self.handler = json_answer(models)
        await chat.probe()
        assert (self.last.method, self.last.path) == ("GET", "/models")
        return self.last


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A fake provider listening on 127.0.0.1."""
    fake = FakeUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    """The shared upstream client, closed after the test."""
    client = HttpClient()
    yield client
    await client.aclose()


def deployment(
    provider: str, base_url: str, *, key: str | None = KEY, **extra: Any
) -> DeploymentConfig:
    """A deployment of ``provider`` pointed at the fake."""
    return DeploymentConfig(
        name=extra.pop("name", f"{provider}-test"),
        provider=Provider(provider),
        model=extra.pop("model", "test-model"),
        api_key=key,
        api_base=base_url,
        **extra,
    )


def json_answer(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Handler:
    """A handler answering ``payload`` as JSON."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=orjson.dumps(payload),
            status=status,
            content_type="application/json",
            headers=dict(headers or {}),
        )

    return handle


def raw_answer(
    body: bytes,
    content_type: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Handler:
    """A handler answering ``body`` verbatim with ``content_type``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body, status=status, content_type=content_type, headers=dict(headers or {})
        )

    return handle


def case_answer(case: Case) -> Handler:
    """A handler answering one of ``shapes``' real error cases."""
    body = case.body if isinstance(case.body, bytes) else orjson.dumps(case.body)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body,
            status=case.status,
            content_type=case.content_type,
            headers=case.headers_now(),
        )

    return handle


def assert_case(error: UpstreamError, case: Case, deployment_name: str) -> None:
    """The error carries the case's class, status and Retry-After, and no key."""
    assert error.error_class is case.expected
    assert error.status == case.status
    assert error.deployment == deployment_name
    if case.retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(case.retry_after, abs=2.0)
    for secret in (KEY, GOOGLE_KEY):
        assert secret not in str(error)
        assert secret not in repr(error)


def sse_answer(frames: Iterable[bytes | str], *, hang: bool = False) -> Handler:
    """A handler streaming ``frames`` (each already SSE-framed) as an event stream.

    With ``hang``, it then waits for the client to go away instead of ending the stream.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in frames:
            await response.write(frame.encode() if isinstance(frame, str) else frame)
        if hang:
            await asyncio.Event().wait()
        await response.write_eof()
        return response

    return handle


async def drain(stream: AsyncIterator[Any]) -> tuple[list[Any], UpstreamError | None]:
    """Every item of a stream, and the error that ended it (``None`` for a clean end)."""
    items: list[Any] = []
    try:
        async for item in stream:
            items.append(item)
    except UpstreamError as exc:
        return items, exc
    return items, None


def sse_data(*payloads: Any, event: str | None = None) -> list[str]:
    """``data:`` frames for JSON payloads (strings are sent as they are)."""
    prefix = f"event: {event}\n" if event else ""
    return [
        f"{prefix}data: {p if isinstance(p, str) else orjson.dumps(p).decode()}\n\n"
        for p in payloads
    ]


def sse_named(events: Iterable[tuple[str, Any]]) -> list[str]:
    """``event:`` + ``data:`` frames, as Anthropic sends them."""
    return [f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n" for name, data in events]
