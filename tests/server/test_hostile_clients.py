"""Clients that never read their answer: they must not pin upstream connections or memory.

Each connection towards a client buffers at most ``ConnectionLimits.write_buffer_bytes`` of an
answer, and a client that leaves it unread for ``write_timeout`` is taken for gone (SPEC rule 6):
its request is cancelled, its upstream connection closed, its connection reset, the request
recorded as ``cancelled``. The clients are raw sockets with a small receive buffer that never
call ``recv``; the upstream is a raw asyncio server that streams as fast as it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from failover import Gateway
from failover.config import config_from_dict
from failover.server import GatewayApp, uvicorn_config
from failover.server.connection import ConnectionLimits
from failover.server.serving import bind_socket
from tests.server.helpers import CLIENT_KEY, MESSAGES, QuietServer, wait_for

UNREAD = ConnectionLimits(write_timeout=1.0)
"""The limits of these tests: a client that reads nothing for a second is gone."""
BOUND = 30.0
"""Seconds within which what the unread clients held must be released (wide: a loaded box)."""
CLIENTS = 200
_CHUNK_TEXT = "x" * 2000
_FAST_EVENTS = 200
"""Events of a stream sent as fast as they are read (400 KB: 4 times what a client's kernel
buffers and the gateway's write buffer hold), before the upstream slows to a trickle."""


# -- an upstream that streams as fast as it is read -----------------------------------------


class FastUpstream:
    """An OpenAI-compatible upstream on loopback: a stream request gets chunks of 2 KB of
    content without end (the first _FAST_EVENTS as fast as they are read, then 20 a second), a
    plain one a completion of ``completion_bytes``. Counts the connections open and the streams
    begun."""

    def __init__(self, completion_bytes: int = 100) -> None:
        self.open = 0
        self.streams = 0
        self.url = ""
        self._completion = orjson.dumps(
            {
                "id": "chatcmpl-fast",
                "object": "chat.completion",
                "created": 1,
                "model": "fast",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "y" * completion_bytes},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            }
        )
        chunk = {
            "id": "chatcmpl-fast",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "fast",
            "choices": [{"index": 0, "delta": {"content": _CHUNK_TEXT}, "finish_reason": None}],
        }
        event = b"data: " + orjson.dumps(chunk) + b"\n\n"
        self._event = b"%x\r\n%b\r\n" % (len(event), event)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> FastUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A small send buffer: the kernel must not queue megabytes of a stream nobody reads.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        self.open += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length))
                if body.get("stream"):
                    self.streams += 1
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"
                    )
                    for sent in itertools.count():
                        writer.write(self._event)
                        await writer.drain()
                        if sent >= _FAST_EVENTS:
                            # Past what any client's buffers hold: a trickle, so that the
                            # kernel does not queue megabytes towards a gateway held back.
                            await asyncio.sleep(0.05)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%b" % (len(self._completion), self._completion)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()


# -- the gateway, and clients that never read ------------------------------------------------


@dataclass
class Served:
    """The gateway on a free port: its port, the uvicorn server, the request log's path."""

    port: int
    server: QuietServer
    store: Path

    def connections(self) -> int:
        """The client connections uvicorn still holds."""
        return len(self.server.server_state.connections)

    def outcomes(self) -> dict[str, int]:
        """How many requests the request log holds, by outcome."""
        with contextlib.closing(sqlite3.connect(self.store)) as db:
            try:
                rows = db.execute("SELECT outcome, COUNT(*) FROM requests GROUP BY outcome")
            except sqlite3.OperationalError:
                return {}  # nothing written yet: the tables come with the first write
            return dict(rows.fetchall())


@contextlib.asynccontextmanager
async def gateway(
    upstream: FastUpstream, tmp_path: Path, limits: ConnectionLimits = UNREAD
) -> AsyncIterator[Served]:
    """The gateway over ``upstream`` (route ``intent``) with ``limits``, request log on
    SQLite."""
    store = tmp_path / "requests.db"
    config = {
        "server": {"api_keys": [CLIENT_KEY]},
        "health": {"check_on_startup": False},
        "store": {"url": f"sqlite:///{store}"},
        "deployments": {
            "fast": {
                "provider": "openai-compatible",
                "api_key": "sk-upstream-fast-0005",
                "model": "fast",
                "api_base": upstream.url,
                "max_retries": 0,
                "timeout": 30,
            }
        },
        "routes": {"intent": {"targets": ["fast"], "deadline": 60}},
    }
    app = GatewayApp(Gateway(config_from_dict(config, env={})))
    sock = bind_socket("127.0.0.1", 0)
    # Accepted connections inherit a fixed send buffer (no autotuning to megabytes on loopback):
    # the gateway's own buffer, not the kernel's, then fills within a few chunks.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    server = QuietServer(uvicorn_config(app, drain_seconds=1, limits=limits))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        assert await wait_for(lambda: server.started or task.done(), 10)
        assert server.started, "the server did not start"
        yield Served(sock.getsockname()[1], server, store)
    finally:
        server.should_exit = True
        await task


def _request(stream: bool, *, close: bool = False) -> bytes:
    body = orjson.dumps({"model": "intent", "messages": MESSAGES, "stream": stream})
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n%b"
        b"authorization: Bearer %b\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n"
        % (b"connection: close\r\n" if close else b"", CLIENT_KEY.encode(), len(body))
    )
    return head + body


def _client(port: int, request: bytes) -> socket.socket:
    """A connection (receive buffer shrunk to the minimum, so that the gateway's side fills at
    once) that has sent ``request``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def never_reading(
    port: int, count: int, *, stream: bool, close: bool = False
) -> Iterator[list[socket.socket]]:
    """``count`` connections that each send a chat request and never read."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_client(port, _request(stream, close=close)))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


async def _answered(port: int) -> dict[str, Any]:
    """A plain chat request from a client that reads: its completion (200 asserted)."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        payload = {"model": "intent", "messages": MESSAGES}
        async with http.post(url, json=payload, timeout=aiohttp.ClientTimeout(10)) as answer:
            assert answer.status == 200, await answer.text()
            completion: dict[str, Any] = await answer.json()
            return completion


# -- the tests -------------------------------------------------------------------------------


async def test_streams_nobody_reads_release_their_upstream_connections(tmp_path: Path) -> None:
    """200 streaming clients that never read: after the write timeout every upstream
    connection is closed, the clients' connections are reset, each request is recorded as
    cancelled, and another client is answered."""
    async with FastUpstream() as upstream, gateway(upstream, tmp_path) as served:
        with never_reading(served.port, CLIENTS, stream=True):
            assert await wait_for(lambda: upstream.streams == CLIENTS, BOUND), upstream.streams
            # Each stream is held back by its client: then released after about a second.
            assert await wait_for(lambda: upstream.open == 0, BOUND), upstream.open
            assert await wait_for(lambda: served.connections() == 0, BOUND)
            completion = await _answered(served.port)
            assert completion["choices"][0]["message"]["content"] == "y" * 100
            expected = {"cancelled": CLIENTS, "success": 1}
            assert await wait_for(lambda: served.outcomes() == expected, BOUND), served.outcomes()


async def test_large_answers_nobody_reads_are_dropped(tmp_path: Path) -> None:
    """Clients that never read a 1 MB answer: their connections, and the bytes buffered for
    them, are dropped after the write timeout; the gateway answers the next client."""
    async with (
        FastUpstream(completion_bytes=1_000_000) as upstream,
        gateway(upstream, tmp_path) as served,
    ):
        with never_reading(served.port, 20, stream=False):
            assert await wait_for(lambda: served.outcomes().get("success") == 20, BOUND)
            # Answered (and recorded) at once, but 1 MB each still waits for its client.
            assert await wait_for(lambda: served.connections() == 0, BOUND), served.connections()
            completion = await _answered(served.port)
            assert len(completion["choices"][0]["message"]["content"]) == 1_000_000


async def test_an_answer_left_under_the_mark_at_a_close_is_dropped(tmp_path: Path) -> None:
    """An answer whose unread rest stays under the buffer's mark (no pause) still holds its
    connection only until the write timeout once the connection closes (by connection: close,
    or keep-alive's end)."""
    # A mark above the answer: only the close can notice that the client reads nothing.
    roomy = ConnectionLimits(write_buffer_bytes=4_000_000, write_timeout=1.0)
    async with (
        FastUpstream(completion_bytes=500_000) as upstream,
        gateway(upstream, tmp_path, roomy) as served,
    ):
        with (
            never_reading(served.port, 10, stream=False, close=True),
            never_reading(served.port, 10, stream=False),
        ):
            assert await wait_for(lambda: served.outcomes().get("success") == 20, BOUND)
            assert await wait_for(lambda: served.connections() == 0, BOUND), served.connections()


async def test_a_slow_reader_gets_its_whole_answer(tmp_path: Path) -> None:
    """A client that reads a large answer slowly but steadily (each second some of it, for
    several write timeouts in all) is served to the end, not taken for gone."""
    size = 200_000
    async with (
        FastUpstream(completion_bytes=size) as upstream,
        gateway(upstream, tmp_path) as served,
    ):
        loop = asyncio.get_running_loop()
        sock = _client(served.port, _request(False, close=True))
        sock.setblocking(False)
        started = loop.time()
        received = []
        with sock:
            while piece := await asyncio.wait_for(loop.sock_recv(sock, 4096), BOUND):
                received.append(piece)
                await asyncio.sleep(0.01)  # 400 KB/s at most
        took = loop.time() - started
    head, _, body = b"".join(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert len(orjson.loads(body)["choices"][0]["message"]["content"]) == size
    assert took > UNREAD.write_timeout  # it did outlast the timeout: it was slow, not cut


def test_default_write_limits() -> None:
    """By default a client that takes nothing for 30 s at most is gone, and at most 64 KiB of
    an answer wait for it before the sender waits too."""
    limits = ConnectionLimits()
    assert 10 <= limits.write_timeout <= 30
    assert limits.write_buffer_bytes == 64 * 1024


async def test_connections_hold_the_write_buffer_limit(tmp_path: Path) -> None:
    """Each client connection's transport pauses its sender at write_buffer_bytes."""
    async with FastUpstream() as upstream, gateway(upstream, tmp_path) as served:
        _, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            assert await wait_for(lambda: served.connections() == 1, BOUND)
            (connection,) = served.server.server_state.connections
            low, high = connection.transport.get_write_buffer_limits()
            assert (low, high) == (UNREAD.write_buffer_bytes // 4, UNREAD.write_buffer_bytes)
        finally:
            writer.close()
