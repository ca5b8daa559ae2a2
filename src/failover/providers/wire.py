"""HTTP/1.1 on the wire for the upstream calls: keep-alive pools, one request per connection.

A gateway's upstream traffic is narrow: POSTs of a JSON body (or GETs without one) to a few
provider hosts, answered with JSON or an event stream, over pooled keep-alive connections. This
module does exactly that on the event loop's own transports and httptools' response parser
(llhttp, the parser Node.js uses), and nothing else: no redirects, no cookies, no proxies, no
content codings (it asks for ``identity``). A general client spends most of a request's cost on
what this traffic never needs: measured with ``bench/http_client.py``, a bare proxy spent 127 µs
of CPU per request through aiohttp's client and 67 µs through this one.

- :class:`Wire` keeps the pools: at most ``limit`` open connections in all, idle ones reused
  newest first and closed after ``keepalive_timeout`` seconds.
- :meth:`Wire.request` sends one request and returns its :class:`WireResponse` once the status
  line and headers are in; the body is read from it (:meth:`~WireResponse.read`,
  :meth:`~WireResponse.readany`).
- A connection goes back to its pool only when its answer was read to the end and both sides
  keep it alive (:meth:`WireResponse.release`); anything else (an error, a cancellation, an
  answer left half-read) closes it (:meth:`WireResponse.close`).
- ``silence`` bounds connecting and every silence while an answer is awaited or read: no byte for
  that long is a :class:`TimeoutError`, and the connection is dropped. Time the reader leaves
  unread bytes waiting does not count.
- A GET on a kept-alive connection that the server closed before a byte of the answer (the race
  of every keep-alive client) goes once more on a new connection; a POST never does (it may have
  been worked on: the engine decides what is retried).
- Heads are bounded (64 KiB, interim answers included); bytes past the end of an answer drop its
  connection.

Failures are :class:`OSError` (refused, reset, TLS) including :class:`BodyCut` (the answer ended
early) and :class:`BadResponse` (not HTTP), or :class:`TimeoutError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import NamedTuple, cast

import httptools

__all__ = ["BadResponse", "BodyCut", "Origin", "Wire", "WireResponse"]

_HIGH_WATER = 256 * 1024
"""Unread answer bytes above which the connection stops reading (the provider is held back)."""
_LOW_WATER = 64 * 1024
_MAX_HEAD = 64 * 1024
"""Bytes of status line and headers (interim answers included) an answer may take."""


class BodyCut(ConnectionError):
    """The connection ended before the answer did."""


class BadResponse(ConnectionError):
    """What came back is not an HTTP/1.x answer."""


class Origin(NamedTuple):
    """Where connections go: a pool per origin (TLS when ``ssl`` is set)."""

    host: str
    port: int
    ssl: ssl.SSLContext | None


class WireResponse:
    """One answer: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_chunks",
        "_connection",
        "_done",
        "_error",
        "_paused",
        "_size",
        "_waiter",
        "_whole",
        "content_type",
        "headers",
        "keep_alive",
        "length_known",
        "status",
    )

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_type = b""
        self.length_known = False  # Content-Length or chunked: the end is in the data
        self.keep_alive = False
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._paused = False
        self._whole = False  # read() wants it all: never hold the provider back
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        """The whole body has arrived."""
        return self._done

    async def read(self) -> bytes:
        """The rest of the body, once it has all arrived."""
        self._whole = True
        if self._paused and self._connection is not None:
            self._paused = False
            self._connection.resume()
        while not self._done:
            await self._wait()
        chunks, self._chunks = self._chunks, deque()
        self._size = 0
        return b"".join(chunks)

    async def readany(self) -> bytes:
        """The next bytes of the body as they arrive; ``b""`` at its end."""
        while not self._chunks:
            if self._done:
                return b""
            await self._wait()
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size <= _LOW_WATER and self._connection is not None:
            self._paused = False
            self._connection.resume()
        return chunk

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if it can be reused."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finished(reuse=self._done and self.keep_alive and self._error is None)

    def close(self) -> None:
        """Done with the answer, whatever its state: its connection is dropped."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finished(reuse=False)

    # -- fed by the connection ------------------------------------------------------------

    def _wait(self) -> asyncio.Future[None]:
        if self._error is not None:
            raise self._error
        waiter = self._waiter
        if waiter is None or waiter.done():  # done: a cancelled wait left it behind
            connection = self._connection
            if connection is None:
                raise BodyCut("the answer was already released")
            waiter = self._waiter = connection.loop.create_future()
        return waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if (
            self._size > _HIGH_WATER
            and not self._paused
            and not self._whole
            and self._connection is not None
        ):
            self._paused = True
            self._connection.pause()
        self._wake()

    def _complete(self, keep_alive: bool) -> None:
        self._done = True
        self.keep_alive = keep_alive
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._done or self._error is not None:
            return
        self._error = error
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def __repr__(self) -> str:
        state = "done" if self._done else "failed" if self._error is not None else "reading"
        return f"<WireResponse {self.status} {state}>"


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, feeds its answer to a :class:`WireResponse`."""

    def __init__(self, wire: Wire, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.wire = wire
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._response: WireResponse | None = None
        self._headers_ready: asyncio.Future[WireResponse] | None = None
        self._timeout = 0.0
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reading = True
        self.sent = 0  # requests sent on this connection
        self.heard = False  # a byte of the current request's answer arrived
        self._head_size = 0

    # -- what the pool and the response call ----------------------------------------------

    def send(self, head: bytes, body: bytes | None, silence: float) -> asyncio.Future[WireResponse]:
        """Write one request; the future gives its answer once its headers are in."""
        transport = self.transport
        assert transport is not None
        assert self._response is None
        self._response = WireResponse(self)
        self.sent += 1
        self.heard = False
        self._head_size = 0
        ready = self._headers_ready = self.loop.create_future()
        if body:
            transport.writelines((head, body))
        else:
            transport.write(head)
        self._timeout = silence
        self._last_read = self.loop.time()
        self._timer = self.loop.call_at(self._last_read + silence, self._check_silence)
        return ready

    def finished(self, *, reuse: bool) -> None:
        """The answer is done with: back to the pool, or closed."""
        self._stop_timer()
        self._response = None
        self._headers_ready = None
        if reuse and not self.closed:
            self.resume()  # a paused answer read to its end: the next one must be heard
            self.wire._put_back(self)
        else:
            self.abort()

    def pause(self) -> None:
        if self.transport is not None and self._reading:
            self._reading = False
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self._reading:
            self._reading = True
            self._last_read = self.loop.time()
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection at once (no reuse, nothing more read)."""
        if not self.closed:
            self.closed = True
            self._stop_timer()
            if self.transport is not None:
                self.transport.abort()
            self.wire._forget(self)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport, only alike).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._response is None:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted again
            return
        self._last_read = self.loop.time()
        self.heard = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._failed(BadResponse(f"the answer is not valid HTTP/1.1 ({exc!r})"))
            self.abort()
            return
        if not self.status_known:
            self._head_size += len(data)
            if self._head_size > _MAX_HEAD:
                self._failed(BadResponse(f"the answer's head is over {_MAX_HEAD} bytes"))
                self.abort()

    def eof_received(self) -> bool:
        response = self._response
        if response is not None and self.status_known and not response.length_known:
            response._complete(keep_alive=False)  # an answer delimited by the connection's end
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError):
            error: OSError = exc
        else:
            error = BodyCut("the connection closed before the answer ended")
        self._failed(error)
        self.closed = True
        self._stop_timer()
        self.wire._forget(self)
        self._response = None  # the response refers back to this connection
        self._headers_ready = None

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        response = self._response
        if response is not None and response.done:
            raise BadResponse("more bytes after the end of the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        if response is None:
            return
        response.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-type":
            response.content_type = value
        elif lowered in (b"content-length", b"transfer-encoding"):
            response.length_known = True

    def on_headers_complete(self) -> None:
        response = self._response
        ready = self._headers_ready
        if response is None or ready is None:
            return
        response.status = self._parser.get_status_code()
        if response.status < 200:
            # 1xx: an interim answer (we never ask for one); the real one follows.
            response.headers = []
            response.content_type = b""
            response.length_known = False
            return
        if not ready.done():
            ready.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        if response is None or response.status < 200:
            return
        self._stop_timer()
        response._complete(self._parser.should_keep_alive())

    # -- inside ---------------------------------------------------------------------------

    @property
    def status_known(self) -> bool:
        ready = self._headers_ready
        return ready is not None and ready.done()

    def _failed(self, error: BaseException) -> None:
        ready = self._headers_ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
        if self._response is not None:
            self._response._fail(error)

    def _check_silence(self) -> None:
        self._timer = None
        if self._response is None or self.closed:
            return
        now = self.loop.time()
        if not self._reading:
            self._last_read = now  # the reader is behind, not the provider
        silent_until = self._last_read + self._timeout
        if now < silent_until:
            self._timer = self.loop.call_at(silent_until, self._check_silence)
            return
        self._failed(TimeoutError(f"no data for {self._timeout:g}s"))
        self.abort()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


class Wire:
    """Keep-alive connection pools, one per :class:`Origin`; see the module's docstring."""

    def __init__(self, *, limit: int = 1000, keepalive_timeout: float = 30.0) -> None:
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0  # connections being made count against the limit too
        self._slots: deque[asyncio.Future[None]] = deque()  # requests waiting for the limit
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def request(
        self, origin: Origin, head: bytes, body: bytes | None, *, silence: float
    ) -> WireResponse:
        """Send ``head`` (request line and headers, ending with the blank line) and ``body``;
        the answer once its headers are in. ``silence`` bounds connecting and each wait for
        bytes. A failure or cancellation drops the connection."""
        connection = await self._connection(origin, silence)
        reused = connection.sent > 0
        try:
            return await self._exchange(connection, head, body, silence)
        except (BodyCut, ConnectionResetError, BrokenPipeError):
            if not reused or connection.heard or not head.startswith(b"GET "):
                raise
        # The server had closed this kept-alive connection as it was reused (the race every
        # client of idle keep-alive connections meets): nothing of the GET was answered, so it
        # goes once more, on a new connection.
        connection = await self._connect(origin, silence)
        return await self._exchange(connection, head, body, silence)

    @staticmethod
    async def _exchange(
        connection: _Connection, head: bytes, body: bytes | None, silence: float
    ) -> WireResponse:
        ready = connection.send(head, body, silence)
        try:
            return await ready
        except BaseException:
            connection.abort()
            raise

    async def aclose(self) -> None:
        """Close every connection; the wire cannot be used again."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in list(self._open):
            connection.abort()
        self._idle.clear()
        for waiter in self._slots:
            if not waiter.done():
                waiter.set_exception(ConnectionError("the client is closed"))
        self._slots.clear()

    # -- the pools ------------------------------------------------------------------------

    async def _connection(self, origin: Origin, silence: float) -> _Connection:
        while True:
            if self._closed:
                raise ConnectionError("the client is closed")
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                transport = connection.transport
                if not connection.closed and transport is not None and not transport.is_closing():
                    return connection
                connection.abort()
            if len(self._open) + self._connecting < self.limit or self._make_room():
                return await self._connect(origin, silence)
            waiter = asyncio.get_running_loop().create_future()
            self._slots.append(waiter)
            try:
                await waiter  # a connection was freed or put back: look again
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._free_slot()  # the wake-up was ours: pass it on
                raise

    async def _connect(self, origin: Origin, silence: float) -> _Connection:
        if self._closed:
            raise ConnectionError("the client is closed")
        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            async with asyncio.timeout(silence):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, origin, loop),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                )
        except BaseException:
            self._connecting -= 1
            self._free_slot()  # the slot it held is someone else's to use
            raise
        self._connecting -= 1
        if self._closed:
            connection.abort()
            raise ConnectionError("the client is closed")
        self._open.add(connection)
        return connection

    def _make_room(self) -> bool:
        """At the limit: close the oldest idle connection of any origin; False if none is idle."""
        for idle in self._idle.values():
            if idle:
                idle[0].abort()
                return True
        return False

    def _put_back(self, connection: _Connection) -> None:
        if self._closed:
            connection.abort()
            return
        connection.idle_since = connection.loop.time()
        self._idle.setdefault(connection.origin, []).append(connection)
        if self._sweep is None:
            self._sweep = connection.loop.call_later(self.keepalive_timeout, self._sweep_idle)
        self._free_slot()

    def _forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            idle = self._idle.get(connection.origin)
            if idle and connection in idle:
                idle.remove(connection)
            self._free_slot()

    def _free_slot(self) -> None:
        while self._slots:
            waiter = self._slots.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep_idle(self) -> None:
        self._sweep = None
        oldest_allowed = asyncio.get_running_loop().time() - self.keepalive_timeout
        remaining = False
        for idle in self._idle.values():
            for connection in [c for c in idle if c.idle_since <= oldest_allowed]:
                connection.abort()
            remaining = remaining or bool(idle)
        if remaining and not self._closed:
            self._sweep = asyncio.get_running_loop().call_later(
                self.keepalive_timeout / 2, self._sweep_idle
            )

    def __repr__(self) -> str:
        idle = sum(len(connections) for connections in self._idle.values())
        return f"<Wire open={len(self._open)} idle={idle} limit={self.limit}>"
