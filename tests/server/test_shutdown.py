"""Shutdown: what the drain cuts is answered and recorded, never cut silently or forgotten.

``failover serve`` (a real process, SIGTERM) with a short drain, under streams that outlast it:
each stream must end with the ``shutting_down`` error event (SPEC rule 8), each plain request
still waiting be answered 503 ``shutting_down``, and the request log hold every one of them once
the process has exited, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from failover.mock_upstream import MockUpstream
from failover.observe.stores import open_store
from tests.observe.conftest import postgres_dsn  # noqa: F401 (a fixture, used by name)
from tests.server.helpers import (
    CLIENT_KEY,
    MESSAGES,
    UPSTREAM_KEY,
    gateway_config,
    running,
    wait_for,
    write_config,
)

Mocks = tuple[MockUpstream, MockUpstream]

DRAIN = 1.0
"""The drain of these tests: the streams run for several seconds more."""
_SERVE = """
import logging, sys
from failover.check import resolve_config
from failover.server.serving import serve
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
sys.exit(serve(resolve_config(sys.argv[1]).with_server(port=0), drain_seconds=float(sys.argv[2])))
"""
"""``failover serve`` with a drain of the test's choosing (the CLI's is at least 30 s)."""


@dataclass
class Process:
    """The gateway's process, its URL, and its log (read all along: a full pipe would block
    it)."""

    process: asyncio.subprocess.Process
    url: str
    log: asyncio.Task[bytes]


@contextlib.asynccontextmanager
async def serving(path: Path) -> AsyncIterator[Process]:
    """The gateway of ``path`` in a process of its own, drain DRAIN, once it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVE, str(path), str(DRAIN), stderr=asyncio.subprocess.PIPE
    )
    stderr = process.stderr
    assert stderr is not None
    log = None
    try:
        url = ""
        while not url:
            line = (await asyncio.wait_for(stderr.readline(), 15)).decode()
            assert line, "the gateway exited before it listened"
            if found := re.search(r"listening on (http://\S+)", line):
                url = found.group(1)
        log = asyncio.ensure_future(stderr.read())
        yield Process(process, url, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if log is not None:
            await log


@dataclass
class Seen:
    """What one client saw: its status, request id, and, for a stream, each event."""

    status: int = 0
    request_id: str = ""
    events: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)
    cut: bool = False  # the connection ended without a complete answer

    @property
    def committed(self) -> bool:
        return any('"content":"' in event for event in self.events)


async def _stream(http: aiohttp.ClientSession, url: str, seen: Seen) -> None:
    payload = {"model": "intent", "messages": MESSAGES, "stream": True}
    try:
        async with http.post(f"{url}/v1/chat/completions", json=payload) as answer:
            seen.status = answer.status
            seen.request_id = answer.headers["x-request-id"]
            async for line in answer.content:
                if line.startswith(b"data: "):
                    seen.events.append(line[6:].strip().decode())
    except aiohttp.ClientPayloadError:
        seen.cut = True


async def _plain(http: aiohttp.ClientSession, url: str, seen: Seen) -> None:
    payload = {"model": "waiting", "messages": MESSAGES}
    try:
        async with http.post(f"{url}/v1/chat/completions", json=payload) as answer:
            seen.status = answer.status
            seen.request_id = answer.headers.get("x-request-id", "")
            text = await answer.text()
            is_json = answer.content_type == "application/json"
            seen.body = json.loads(text) if is_json else {"text": text}
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        seen.cut = True


def _config(main: MockUpstream, hanging: MockUpstream, store: str) -> dict[str, Any]:
    """Route ``intent`` streams slowly from ``main``; route ``waiting`` never gets an answer."""
    config = gateway_config(main, hanging, timeout=30.0, deadline=60)
    config["routes"]["waiting"] = {"targets": ["fallback"], "deadline": 60}
    config["store"] = {"url": store}
    return config


async def _cut_at_shutdown(store: str, tmp_path: Path, streams: int, plain: int) -> None:
    """``streams`` streams under way and ``plain`` requests waiting, SIGTERM: each stream ends
    with the shutting_down event, each plain request is 503 shutting_down, all are recorded."""
    async with (
        MockUpstream("healthy", name="main", seed=1) as main,
        MockUpstream("hanging", name="fallback", seed=2) as hanging,
    ):
        main.set_profile(chunk_delay=0.5)  # about 5 s a stream: far past the drain
        path = write_config(tmp_path, _config(main, hanging, store))
        async with serving(path) as served:
            process, url = served.process, served.url
            headers = {"authorization": f"Bearer {CLIENT_KEY}"}
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
                seen_streams = [Seen() for _ in range(streams)]
                seen_plain = [Seen() for _ in range(plain)]
                clients = [
                    *(asyncio.ensure_future(_stream(http, url, s)) for s in seen_streams),
                    *(asyncio.ensure_future(_plain(http, url, s)) for s in seen_plain),
                ]
                committed = await wait_for(
                    lambda: (
                        all(s.committed for s in seen_streams) and hanging.stats.in_flight == plain
                    ),
                    seconds=30,
                )
                assert committed, (sum(s.committed for s in seen_streams), hanging.stats)
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(asyncio.gather(*clients), 30)
            assert await asyncio.wait_for(process.wait(), 30) == 0
            log = (await served.log).decode()
    assert UPSTREAM_KEY not in log
    assert CLIENT_KEY not in log
    for seen in seen_streams:
        assert (seen.status, seen.cut) == (200, False), seen
        assert "[DONE]" not in seen.events, seen
        error = json.loads(seen.events[-1])["error"]
        assert (error["code"], error["type"]) == ("shutting_down", "service_unavailable_error")
        assert "shutting down" in error["message"]
    for seen in seen_plain:
        assert seen.status == 503, seen
        assert seen.body["error"]["code"] == "shutting_down", seen
        assert seen.request_id.startswith("req_")
    record_store = open_store(store)
    assert record_store is not None
    try:
        # A stream's attempt won at its commit; a waiting one's was cancelled (rule 7).
        expected = [(s, "success") for s in seen_streams] + [(s, "cancelled") for s in seen_plain]
        for seen, attempt in expected:
            row = await record_store.get(seen.request_id)
            assert row is not None, f"request {seen.request_id} was not recorded"
            assert row.outcome == "cancelled"
            assert [a.outcome for a in row.attempts] == [attempt], row.attempts
    finally:
        await record_store.aclose()


@pytest.mark.slow
async def test_sigterm_cuts_200_streams_with_an_error_event_and_records_them_sqlite(
    tmp_path: Path,
) -> None:
    """SIGTERM under 200 streams and 10 waiting requests (SQLite): every stream ends with the
    shutting_down event, every waiting request is 503, every one of them is recorded."""
    await _cut_at_shutdown(f"sqlite:///{tmp_path / 'requests.db'}", tmp_path, 200, 10)


@pytest.mark.slow
@pytest.mark.services
async def test_sigterm_cuts_50_streams_with_an_error_event_and_records_them_postgresql(
    tmp_path: Path,
    postgres_dsn: str,  # noqa: F811 (the fixture)
) -> None:
    """SIGTERM under 50 streams and 5 waiting requests (PostgreSQL, a schema of its own): every
    stream ends with the shutting_down event, every waiting request is 503, all recorded."""
    await _cut_at_shutdown(postgres_dsn, tmp_path, 50, 5)


async def test_closing_the_app_cuts_what_still_runs(mocks: Mocks, tmp_path: Path) -> None:
    """Closing the app while requests run (a host that does not cancel them itself): each
    stream ends with the shutting_down event, each waiting request is 503, all recorded."""
    main, fallback = mocks
    main.set_profile(chunk_delay=0.5)
    fallback.set_profile("hanging")
    store = f"sqlite:///{tmp_path / 'requests.db'}"
    async with running(_config(main, fallback, store)) as gw:
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            streams, waiting = [Seen() for _ in range(5)], [Seen() for _ in range(3)]
            clients = [
                *(asyncio.ensure_future(_stream(http, gw.origin, s)) for s in streams),
                *(asyncio.ensure_future(_plain(http, gw.origin, s)) for s in waiting),
            ]
            assert await wait_for(
                lambda: all(s.committed for s in streams) and fallback.stats.in_flight == 3, 10
            )
            await gw.app.aclose()
            await asyncio.wait_for(asyncio.gather(*clients), 10)
    for seen in streams:
        assert json.loads(seen.events[-1])["error"]["code"] == "shutting_down", seen
    for seen in waiting:
        assert seen.status == 503, seen
        assert seen.body["error"]["code"] == "shutting_down", seen
    record_store = open_store(store)
    assert record_store is not None
    try:
        for seen in (*streams, *waiting):
            row = await record_store.get(seen.request_id)
            assert row is not None, seen
            assert row.outcome == "cancelled", seen
    finally:
        await record_store.aclose()


_BIG_EVENT = (
    b"data: "
    + json.dumps(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "x" * 8000}}],
        }
    ).encode()
    + b"\n\n"
)


@contextlib.asynccontextmanager
async def _fast_stream_upstream() -> AsyncIterator[str]:
    """An OpenAI-compatible upstream that streams 8 KB chunks as fast as it may, for ever."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            while True:
                writer.write(b"%x\r\n%b\r\n" % (len(_BIG_EVENT), _BIG_EVENT))
                await writer.drain()
                await asyncio.sleep(0.005)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()


def _one_route(tmp_path: Path, url: str) -> Path:
    config = {
        "server": {"api_keys": [CLIENT_KEY]},
        "store": {"url": f"sqlite:///{tmp_path / 'requests.db'}"},
        "health": {"check_on_startup": False},
        "deployments": {
            "main": {"provider": "openai", "model": "m", "api_key": UPSTREAM_KEY, "api_base": url,
                     "timeout": 30}
        },
        "routes": {"intent": {"targets": ["main"], "deadline": 60}},
    }  # fmt: skip
    return write_config(tmp_path, config)


def _head(body: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %b\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (CLIENT_KEY.encode(), len(body))
    )


@pytest.mark.slow
async def test_a_slow_reader_still_gets_the_shutting_down_event(tmp_path: Path) -> None:
    """A stream whose client has stopped reading when the drain ends gets its shutting_down
    event once it reads again within the shutdown's wait (a second cut does not eat it)."""
    import socket

    body = json.dumps({"model": "intent", "stream": True, "messages": MESSAGES}).encode()
    async with _fast_stream_upstream() as url, serving(_one_route(tmp_path, url)) as served:
        port = int(served.url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
        writer.write(_head(body) + body)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.read(10000)  # the stream is under way; now the client stops reading
        await asyncio.sleep(2.0)  # the buffers towards it fill up
        served.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(DRAIN + 0.7)  # the drain is over: the request was cut
        received = bytearray()
        while data := await asyncio.wait_for(reader.read(65536), 20):
            received += data
        writer.close()
        assert await asyncio.wait_for(served.process.wait(), 30) == 0
    assert b'"code":"shutting_down"' in received
    assert received.endswith(b"0\r\n\r\n")  # the answer ended properly, not cut


async def test_a_request_still_uploading_at_shutdown_is_answered_503(tmp_path: Path) -> None:
    """A request whose body is still coming when the drain ends is answered 503
    shutting_down, not a 500."""
    body = json.dumps({"model": "intent", "messages": MESSAGES}).encode()
    async with _fast_stream_upstream() as url, serving(_one_route(tmp_path, url)) as served:
        port = int(served.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_head(body) + body[:10])  # the rest never comes
        await writer.drain()
        await asyncio.sleep(0.3)
        served.process.send_signal(signal.SIGTERM)
        answer = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        assert await asyncio.wait_for(served.process.wait(), 30) == 0
        log = (await served.log).decode()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b'"code":"shutting_down"' in answer
    assert "Traceback" not in log
