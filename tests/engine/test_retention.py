"""Nothing an attempt read stays alive after its request failed on a timeout.

A timeout cancels the reader inside the provider's frames (an SSE parser holding a line that was
still arriving); what the engine raises instead must not keep that cancellation's traceback, and
with it those frames, as its context: the gateway runs with the cyclic collector frozen
(``gc.freeze()``), so only reference counting frees them. These tests run with the collector off
and look for live parsers after the request, before and after the commit.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from failover import AllTargetsFailed, Gateway, UpstreamTimeout
from failover.providers.sse import SSEParser

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
_ROLE = b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
_HI = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
_LINE = b'data: {"x":"' + b"a" * 500_000  # no end: still arriving when the timeout fires


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@asynccontextmanager
async def _upstream(first: bytes) -> AsyncIterator[str]:
    """Streams ``first``, then a line that never ends, a byte every 0.1 s."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_HEAD + _chunk(first) + _chunk(_LINE))
            while True:
                await asyncio.sleep(0.1)
                writer.write(_chunk(b"a"))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()


@contextmanager
def _no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _gateway(url: str) -> Gateway:
    return Gateway.from_dict(
        {
            "store": {"url": "none"},
            "alerts": [],
            "health": {"check_on_startup": False},
            "deployments": {
                "main": {
                    "provider": "openai",
                    "model": "m",
                    "api_key": "sk-x",
                    "api_base": url,
                    "timeout": 0.5,
                    "max_retries": 0,
                }
            },
            "routes": {"intent": {"targets": ["main"], "deadline": 10}},
        }
    )


def _parsers() -> int:
    return sum(isinstance(o, SSEParser) for o in gc.get_objects())


@pytest.mark.parametrize(("first", "error"), [(_ROLE, AllTargetsFailed), (_HI, UpstreamTimeout)])
async def test_a_timed_out_stream_leaves_no_reader_behind(first: bytes, error: type) -> None:
    """Before the commit (the attempt's timeout) and after it (the gap between chunks), the
    parser of a line still arriving is gone once the request has failed."""
    async with _upstream(first) as url, _gateway(url) as gateway:
        with _no_collector():
            with pytest.raises(error):
                async for _ in gateway.stream("intent", [{"role": "user", "content": "x"}]):
                    pass
            await asyncio.sleep(0.2)
            assert _parsers() == 0
