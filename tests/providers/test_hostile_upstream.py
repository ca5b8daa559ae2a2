"""Hostile upstreams on loopback against the real client: answers that never end or lie about
their length, error bodies without end, event streams without line ends, a provider that hangs
every connection (on both event loops, see conftest).

Each fake is a raw asyncio server, so that any framing can be sent, and it counts the bytes it
managed to write before the client let go. The memory tests read this process's resident memory
(``/proc/self/statm``) from a sampling thread while the attack runs, with the cyclic garbage
collector off: whatever the client buffered must be let go by reference counting alone, the
moment the request ends, as in the gateway (whose start-up ``gc.freeze()`` makes full collections
rare). Bounds: at most :data:`PEAK_MB` above the start while the attack runs, and within
:data:`AFTER_MB` of it once the request has ended (the allocator may keep a freed bound's worth;
what it kept from earlier tests is handed back before the start is read).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from failover.config import RouteConfig
from failover.engine import Engine
from failover.errors import AllTargetsFailed, ErrorClass, MalformedResponse, UpstreamError
from failover.providers import HttpClient, OpenAICompatProvider
from failover.providers.wire import MAX_BODY
from failover.types import ChatRequest
from tests.engine.fakes import RecordingHealth
from tests.providers.conftest import deployment

HELLO = ChatRequest(messages=[{"role": "user", "content": "hi"}])
MB = 1024 * 1024
BOUND = f"{MAX_BODY // MB} MiB"  # the message's name of the body bound (16 MiB)
PEAK_MB = 100
AFTER_MB = 50
_PIECE = b"x" * MB
_OK = b'{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Attack"], Awaitable[None]]


@dataclass
class Attack:
    """A hostile server: its URL, the requests it read and the answer bytes it got written."""

    url: str = ""
    requests: int = 0
    written: int = 0


@asynccontextmanager
async def hostile(answer: Answer) -> AsyncIterator[Attack]:
    """A server answering every request it reads with ``answer(reader, writer, attack)``."""
    attack = Attack()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                await reader.readexactly(int(found.group(1)) if found else 0)
                attack.requests += 1
                await answer(reader, writer, attack)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    attack.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield attack
    finally:
        server.close()


def flood(
    status: int, framing: str, total: int, content_type: bytes = b"application/json"
) -> Answer:
    """Answer ``status`` and up to ``total`` bytes of body as fast as the client takes them,
    then hang: ``framing`` is ``length:N`` (a Content-Length of N), ``chunked`` or ``close``."""
    if framing.startswith("length:"):
        delimiter = b"Content-Length: " + framing.removeprefix("length:").encode()
    elif framing == "chunked":
        delimiter = b"Transfer-Encoding: chunked"
    else:
        delimiter = b"Connection: close"
    head = b"HTTP/1.1 %d Hostile\r\nContent-Type: %s\r\n%s\r\n\r\n" % (
        status,
        content_type,
        delimiter,
    )
    piece = b"100000\r\n" + _PIECE + b"\r\n" if framing == "chunked" else _PIECE

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack
    ) -> None:
        writer.write(head)
        while attack.written < total:
            writer.write(piece)
            await writer.drain()
            attack.written += MB
        await reader.read()  # only a client that read it all gets here: until it goes

    return answer


def rss() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Memory:
    """Resident memory at the start, its peak while sampled, and now."""

    start: int
    peak: int = 0

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / MB

    @property
    def now_mb(self) -> float:
        return (rss() - self.start) / MB


def _trim() -> None:
    """Hand the memory the C allocator keeps free back to the system (glibc), so that the start
    is what is in use: an earlier test's freed memory would otherwise hide this one's growth."""
    libc = ctypes.util.find_library("c")
    if libc is not None:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim is not None:
            trim(0)


@contextmanager
def watched() -> Iterator[Memory]:
    """Sample this process's memory every millisecond, the cyclic collector off meanwhile."""
    gc.collect()
    _trim()
    memory = Memory(rss())
    memory.peak = memory.start
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            memory.peak = max(memory.peak, rss())

    sampler = threading.Thread(target=sample, daemon=True)
    gc.disable()
    sampler.start()
    try:
        yield memory
    finally:
        stop.set()
        sampler.join()
        gc.enable()


async def settle() -> None:
    """Let the loop run the callbacks a closed connection leaves (no collection is forced)."""
    for _ in range(3):
        await asyncio.sleep(0.01)


def provider(http: HttpClient, url: str, **extra: Any) -> OpenAICompatProvider:
    """An OpenAI-compatible deployment at ``url`` (timeout 3 s unless given)."""
    return OpenAICompatProvider(deployment("openai", url, **{"timeout": 3, **extra}), http)


# -- answers read whole ----------------------------------------------------------------------

FLOODS = [
    pytest.param("length:524288000", 32 * MB, id="500 MB Content-Length"),
    pytest.param("length:10000000000", 32 * MB, id="10 GB Content-Length"),
    pytest.param("chunked", 64 * MB, id="endless chunked"),
    pytest.param("close", 64 * MB, id="endless until close"),
]


@pytest.mark.parametrize(("framing", "most_written"), FLOODS)
async def test_an_answer_over_the_bound_fails_as_malformed_and_is_let_go(
    http: HttpClient, framing: str, most_written: int
) -> None:
    """A JSON answer over 16 MiB fails as malformed, naming the bound (a Content-Length above
    it before a byte of body is read); memory stays bounded and is let go at once."""
    async with hostile(flood(200, framing, 512 * MB)) as attack:
        chat = provider(http, attack.url)
        with watched() as memory:
            with pytest.raises(MalformedResponse) as caught:
                await chat.complete(HELLO)
            await settle()
            after = memory.now_mb
    assert caught.value.error_class is ErrorClass.MALFORMED
    assert BOUND in caught.value.message
    assert caught.value.status == 200
    assert attack.written < most_written  # the client let go at its bound, not at the end
    assert memory.peak_mb < PEAK_MB
    assert after < AFTER_MB


async def test_an_answer_under_the_bound_that_stalls_is_let_go_after_each_timeout() -> None:
    """Answers that stall under the bound until the attempt's timeout (a 504) leave nothing
    held once each request ends: no growth over several requests, the collector off."""

    async def stall(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(15):  # 15 MiB: under the bound, then silence
            writer.write(b"100000\r\n" + _PIECE + b"\r\n")
            await writer.drain()
            attack.written += MB
        await reader.read()

    async with hostile(stall) as attack, HttpClient() as http:
        main = provider(http, attack.url, name="main", timeout=0.5, max_retries=0)
        health = RecordingHealth()
        engine = Engine({"main": main}, {"main": main.deployment}, health)
        route = RouteConfig(name="intent", targets=("main",), deadline=5)
        afters = []
        with watched() as memory:
            for number in range(3):
                with pytest.raises(AllTargetsFailed):
                    await engine.chat(route, HELLO, request_id=f"req-{number}")
                await settle()
                afters.append(memory.now_mb)
        await engine.aclose()
    assert health.reported("main") == ["timeout"] * 3
    assert attack.written >= 45 * MB  # each request did buffer its 15 MiB
    assert memory.peak_mb < PEAK_MB
    assert max(afters) < AFTER_MB


async def test_a_decoded_answer_that_is_not_a_completion_is_let_go() -> None:
    """A 14 MiB JSON answer under the bounds (bytes and values) that is not a completion decodes
    to some 40 MiB; once its request has failed (malformed) nothing of it is held, the
    collector off."""
    strings = b'"ab",' * 500_000  # 500,000 values of 59 bytes each, decoded
    body = b'{"junk":[' + strings + b'"ab"],"pad":"' + b"x" * 12 * MB + b'"}'

    async def junk(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()

    async with hostile(junk) as attack, HttpClient() as http:
        main = provider(http, attack.url, name="main", max_retries=0)
        health = RecordingHealth()
        engine = Engine({"main": main}, {"main": main.deployment}, health)
        route = RouteConfig(name="intent", targets=("main",), deadline=10)
        afters = []
        with watched() as memory:
            for number in range(3):
                with pytest.raises(AllTargetsFailed):
                    await engine.chat(route, HELLO, request_id=f"req-{number}")
                await settle()
                afters.append(memory.now_mb)
        await engine.aclose()
    assert health.reported("main") == ["malformed"] * 3
    assert max(afters) < AFTER_MB


def answer_body(body: bytes) -> Answer:
    """Answer ``body`` as JSON, written a mebibyte at a time (the server holds no copy)."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), MB):
            writer.write(body[start : start + MB])
            await writer.drain()
            attack.written += min(MB, len(body) - start)

    return answer


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"{}", id="empty objects"),  # 384 MiB decoded
        pytest.param(b"[]", id="empty arrays"),  # 341 MiB
        pytest.param(b'"ab"', id="short strings"),  # 189 MiB
    ],
)
async def test_an_answer_of_many_small_values_fails_before_it_is_decoded(
    http: HttpClient, value: bytes
) -> None:
    """A 15 MiB answer, under the byte bound, of millions of small JSON values (which would
    decode to 190-380 MiB of objects) fails as malformed, naming the bound on values, before it
    is decoded: memory stays bounded over two such answers and is let go at once."""
    count = 15 * MB // (len(value) + 1)
    body = b'{"id":"c","choices":[],"pad":[' + b",".join([value] * count) + b"]}"
    async with hostile(answer_body(body)) as attack:
        chat = provider(http, attack.url)
        afters = []
        with watched() as memory:
            for _ in range(2):
                with pytest.raises(MalformedResponse) as caught:
                    await chat.complete(HELLO)
                await settle()
                afters.append(memory.now_mb)
    assert "over 524288 values" in caught.value.message
    assert caught.value.status == 200
    assert attack.written == 2 * len(body)  # read whole, under the byte bound
    assert memory.peak_mb < PEAK_MB
    assert max(afters) < AFTER_MB


@pytest.mark.parametrize(
    "framing",
    [pytest.param("length:10000000000", id="10 GB Content-Length"), "chunked"],
)
async def test_an_error_body_is_read_only_to_its_bound(http: HttpClient, framing: str) -> None:
    """A 500 whose body claims 10 GB or never ends is classified from its first 64 KiB; the
    rest is never read and nothing is held afterwards."""
    async with hostile(flood(500, framing, 512 * MB)) as attack:
        chat = provider(http, attack.url)
        with watched() as memory:
            with pytest.raises(UpstreamError) as caught:
                await chat.complete(HELLO)
            await settle()
            after = memory.now_mb
    assert caught.value.error_class is ErrorClass.SERVER_ERROR
    assert caught.value.status == 500
    assert attack.written < 64 * MB
    assert memory.peak_mb < PEAK_MB
    assert after < AFTER_MB


@pytest.mark.parametrize(
    "framing",
    [pytest.param("length:10000000000", id="10 GB Content-Length"), "chunked"],
)
async def test_the_models_probe_reads_within_the_bound(http: HttpClient, framing: str) -> None:
    """The start-up and ``failover check`` probe (``GET /models``) fails as malformed on a
    body over the bound instead of reading it all."""
    async with hostile(flood(200, framing, 512 * MB)) as attack:
        chat = provider(http, attack.url)
        with watched() as memory:
            with pytest.raises(MalformedResponse, match=BOUND):
                await chat.probe()
            await settle()
            after = memory.now_mb
    assert attack.written < 64 * MB
    assert memory.peak_mb < PEAK_MB
    assert after < AFTER_MB


# -- event streams ----------------------------------------------------------------------------


def event_stream(body: Iterator[bytes]) -> Answer:
    """Answer an event stream of ``body``'s pieces, then end it."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        for piece in body:
            writer.write(piece)
            await writer.drain()
            attack.written += len(piece)
        writer.close()

    return answer


def pieces(first: bytes, piece: bytes, count: int) -> Iterator[bytes]:
    yield first
    for _ in range(count):
        yield piece


async def test_a_stream_line_without_an_end_fails_at_its_bound(http: HttpClient) -> None:
    """An event stream whose line never ends (8 MiB without a newline) fails the attempt as
    malformed, naming the bound, instead of being buffered and rescanned to its end."""
    body = pieces(b"data: ", b"x" * 64 * 1024, 128)
    async with hostile(event_stream(body)) as attack:
        chat = provider(http, attack.url)
        with pytest.raises(MalformedResponse) as caught:
            async for _ in chat.stream(HELLO):
                pass
    assert "1048576 bytes" in caught.value.message
    assert caught.value.deployment == "openai-test"


async def test_a_stream_event_without_an_end_fails_at_its_bound(http: HttpClient) -> None:
    """An event whose data lines never reach the blank line that ends it fails as malformed
    once its data passes the bound."""
    line = b"data: " + b"y" * 16 * 1024 + b"\n"
    async with hostile(event_stream(pieces(b"", line, 512))) as attack:
        chat = provider(http, attack.url)
        with pytest.raises(MalformedResponse, match="an event over 1048576 bytes"):
            async for _ in chat.stream(HELLO):
                pass


@pytest.mark.parametrize(
    "line", [pytest.param(b"data:\n", id="data:"), pytest.param(b"data\n", id="data")]
)
async def test_a_stream_event_of_empty_data_lines_fails_at_its_bound(
    http: HttpClient, line: bytes
) -> None:
    """An event of empty data lines that never reaches its blank line (64 MiB of them) fails
    as malformed once the newlines that join them pass the bound, instead of growing a list of
    them for as long as the provider sends; memory stays bounded and is let go."""
    piece = line * (64 * 1024 // len(line))
    async with hostile(event_stream(pieces(b"", piece, 64 * MB // len(piece)))) as attack:
        chat = provider(http, attack.url)
        with watched() as memory:
            with pytest.raises(MalformedResponse) as caught:
                async for _ in chat.stream(HELLO):
                    pass
            await settle()
            after = memory.now_mb
    assert "an event over 1048576 bytes" in caught.value.message
    assert attack.written < 16 * MB  # about 1 Mi lines: the bound, not the end
    assert memory.peak_mb < PEAK_MB
    assert after < AFTER_MB


# -- connections ------------------------------------------------------------------------------


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack) -> None:
    """Never answer: hold the connection until the client goes."""
    await reader.read()


async def answer_ok(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack
) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(_OK), _OK)
    )
    await writer.drain()


async def until(predicate: Callable[[], bool]) -> None:
    """Return once ``predicate()`` holds (fail after 5 s)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it never happened")


async def test_connections_hung_at_one_provider_never_make_another_wait() -> None:
    """Provider A hangs every connection up to the limit; a request to provider B is answered
    at once on its own connections, while A's requests still hang."""
    async with (
        hostile(hang) as a,
        hostile(answer_ok) as b,
        HttpClient(limit=2) as http,
    ):
        at_a = provider(http, a.url, name="a", timeout=30)
        hung = [asyncio.create_task(at_a.complete(HELLO)) for _ in range(2)]
        await until(lambda: a.requests == 2)
        async with asyncio.timeout(3):
            completion = await provider(http, b.url, name="b").complete(HELLO)
        assert completion["choices"][0]["message"]["content"] == "ok"
        assert not any(task.done() for task in hung)
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)


async def test_a_wait_for_a_connection_is_bounded_and_not_the_providers_failure() -> None:
    """A's only connection hangs: the next attempt at A gives up waiting for one well before
    its timeout, the engine moves on to B, and A's health is not told (nothing was sent)."""
    async with (
        hostile(hang) as a,
        hostile(answer_ok) as b,
        HttpClient(limit=1) as http,
    ):
        # The pool's wait is at most half the deployment's timeout: here 0.5 s of 1 s.
        at_a = provider(http, a.url, name="a", timeout=1, max_retries=0)
        at_b = provider(http, b.url, name="b", max_retries=0)
        occupier = provider(http, a.url, name="a-long", timeout=30)
        hung = asyncio.create_task(occupier.complete(HELLO))
        await until(lambda: a.requests == 1)
        health = RecordingHealth()
        engine = Engine(
            {"a": at_a, "b": at_b}, {"a": at_a.deployment, "b": at_b.deployment}, health
        )
        route = RouteConfig(name="intent", targets=("a", "b"), deadline=10)
        result = await engine.chat(route, HELLO, request_id="req-1")
        await engine.aclose()
        assert not hung.done()  # A's connection was still taken all along
        hung.cancel()
        await asyncio.gather(hung, return_exceptions=True)
    assert result.deployment == "b"
    assert health.reported("a") == ["cancelled"]
    assert health.reported("b") == ["success"]
    first = result.attempts[0]
    assert (first.deployment, first.error_class) == ("a", "connection")
    assert a.requests == 1  # the attempt at A sent nothing


async def test_running_out_of_file_descriptors_is_not_the_providers_failure() -> None:
    """A connect that fails because this process has no file descriptor left (EMFILE) is our
    own shortage: the engine moves on and the deployment's health is not told."""
    import resource

    async with hostile(answer_ok) as a, HttpClient() as http:
        at_a = provider(http, a.url, name="a", max_retries=0)
        health = RecordingHealth()
        engine = Engine({"a": at_a}, {"a": at_a.deployment}, health)
        route = RouteConfig(name="intent", targets=("a",), deadline=10)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # A few descriptors above those open now, so that taking the rest is quick.
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 64, hard))
        held: list[int] = []
        try:
            while True:  # take every descriptor left
                try:
                    held.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            with pytest.raises(AllTargetsFailed) as failed:
                await engine.chat(route, HELLO, request_id="req-1")
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        await engine.aclose()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
    assert health.reported("a") == ["cancelled"]
    [error] = failed.value.errors
    assert isinstance(error, UpstreamError)
    assert error.error_class is ErrorClass.CONNECTION
    assert a.requests == 0
