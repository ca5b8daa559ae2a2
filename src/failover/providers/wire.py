"""HTTP/1.1 on the wire for the upstream calls: keep-alive pools, one request per connection.

A gateway's upstream traffic is narrow: POSTs of a JSON body (or GETs without one) to a few
provider hosts, answered with JSON or an event stream, over pooled keep-alive connections. This
module does exactly that on the event loop's own transports and httptools' response parser
(llhttp, the parser Node.js uses), and nothing else: no redirects, no cookies, no proxies, no
content codings (it asks for ``identity``). A general client spends most of a request's cost on
what this traffic never needs: measured with ``bench/http_client.py``, a bare proxy spent 127 µs
of CPU per request through aiohttp's client and 67 µs through this one.

- :class:`Wire` keeps one pool per origin, each with its own ``limit`` of open connections, so
  that connections hung at one provider never make a request to another wait. Idle connections
  are reused newest first and closed after ``keepalive_timeout`` seconds.
- A request that finds its origin at the limit waits for a connection at most ``wait`` seconds,
  then fails with :class:`PoolTimeout`: failover gave up before the upstream was asked anything,
  so it says nothing of the provider's health (the caller keeps the wait shorter than its own
  timeout, which would).
- Waiting requests are served first come, first served: a connection put back, or the place of
  one closed, is handed to the first of them, and a request that arrives while any wait queues
  behind them. (Were it left for whoever looks first, a busy origin's newcomers, which look
  before the woken request runs, would take every one, and the request waiting longest would
  time out while later ones are served.) A request cancelled once something was handed to it
  hands it on.
- :meth:`Wire.request` sends one request and returns its :class:`WireResponse` once the status
  line and headers are in; the body is read from it (:meth:`~WireResponse.read`, bounded,
  :meth:`~WireResponse.readany`).
- A connection goes back to its pool only when its answer was read to the end and both sides
  keep it alive (:meth:`WireResponse.release`); anything else (an error, a cancellation, an
  answer left half-read) closes it (:meth:`WireResponse.close`), and the bytes it held are let go
  at once.
- ``silence`` bounds connecting and every silence while an answer is awaited or read: no byte for
  that long is a :class:`TimeoutError`, and the connection is dropped. Time the reader leaves
  unread bytes waiting does not count.
- Heads are bounded (64 KiB, interim answers included); a body read whole is bounded by
  :meth:`~WireResponse.read`'s ``limit`` (a Content-Length above it fails before a byte is read,
  any other answer as soon as it passes it); one read piece by piece is held back at 256 KiB
  unread. Bytes past the end of an answer drop its connection.

**The keep-alive race.** A server may close an idle kept-alive connection at any moment, also
just as we reuse it. Two cases, told apart by what had reached us when the request was written:

- The close (an end, a reset) arrived before: the event loop, busy elsewhere, had not yet seen
  it. So, before a kept-alive connection is written again, its socket is asked (``poll``, no
  wait) whether anything is there to read: on an idle HTTP/1.1 connection anything at all (an
  end, a reset, stray bytes, a TLS close alert) means it cannot be used. It is dropped unwritten
  and the request takes another connection; nothing was sent, so any request, a POST too, is
  safe, and it is not the provider's failure.
- The close arrived after the request was written: the server may have read it, and begun it
  (a completion, billed) before it crashed or was deployed over. From here on no timing tells a
  close that crossed the request on the wire from one that followed work (a window long enough
  to be safe on a distant provider is wide enough, on a busy event loop, to take in a crash
  200 ms into the work). So a GET, idempotent (RFC 9110 §9.2.2), goes once more on a new
  connection, and any other request does not: it fails as a cut connection, and the engine,
  which alone decides retries (rule 2), decides. This is Go's net/http rule (a non-idempotent
  request is resent only when nothing of it was written), with the check before writing made
  explicit; aiohttp resends idempotent methods only (RFC 9112 §9.3.1).

A resend happens at most once per request, on a new connection that is never resent again, so
retries never multiply; a timeout, a malformed answer or any byte heard is never resent.

Failures are :class:`OSError` (refused, reset, TLS) including :class:`BodyCut` (the answer ended
early), :class:`BadResponse` (not HTTP) and :class:`BodyTooLarge` (over the reader's bound), or
:class:`TimeoutError` including :class:`PoolTimeout` (no connection free in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import select
import ssl
from collections import deque
from typing import NamedTuple, cast

import httptools

__all__ = [
    "MAX_BODY",
    "BadResponse",
    "BodyCut",
    "BodyTooLarge",
    "Origin",
    "PoolTimeout",
    "Wire",
    "WireResponse",
]

MAX_BODY = 16 * 1024 * 1024
"""The default bound of a body read whole (:meth:`WireResponse.read`), 16 MiB: four times the
text of a million-token answer (about 4 MB), when the longest answers models write today are
some 128k tokens (half a megabyte). A body is held twice for a moment, its pieces and their
join; what decoding it may cost beside is bounded apart (``http.MAX_JSON_VALUES``)."""

_HIGH_WATER = 256 * 1024
"""Unread answer bytes above which the connection stops reading (the provider is held back)."""
_LOW_WATER = 64 * 1024
_MAX_HEAD = 64 * 1024
"""Bytes of status line and headers (interim answers included) an answer may take."""
_POLL = getattr(select, "poll", None)  # not on Windows: there idle connections are not asked


class _Grant(enum.Enum):
    """What a waiting request is handed, beside a connection."""

    PLACE = "a place under the limit: connect"
    EXPIRED = "the wait is over"
    CLOSED = "the client closed"


class BodyCut(ConnectionError):
    """The connection ended before the answer did."""


class BadResponse(ConnectionError):
    """What came back is not an HTTP/1.x answer."""


class BodyTooLarge(BadResponse):
    """The body is over the bound its reader set; ``limit`` is that bound in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the body is over the {limit}-byte bound")

    def __reduce__(self) -> tuple[type[BodyTooLarge], tuple[int]]:
        return type(self), (self.limit,)


class PoolTimeout(TimeoutError):
    """No connection to the origin was free within the wait: nothing was sent."""


class Origin(NamedTuple):
    """Where connections go: a pool per origin (TLS when ``ssl`` is set)."""

    host: str
    port: int
    ssl: ssl.SSLContext | None


def _fresh(error: BaseException) -> BaseException:
    """A copy of a stored failure to raise: the stored one never gets a traceback, which would
    hold the reader's frames (and the response they refer to) in a cycle with it."""
    try:
        return copy.copy(error)
    except Exception:  # an exception that cannot be rebuilt from its arguments
        return error


class WireResponse:
    """One answer: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_bound",
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
        "length",
        "length_known",
        "status",
    )

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_type = b""
        self.length: int | None = None  # the Content-Length, when the answer gave one
        self.length_known = False  # Content-Length or chunked: the end is in the data
        self.keep_alive = False
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._bound = _HIGH_WATER  # unread bytes past which _feed acts: hold back, or fail
        self._paused = False
        self._whole = False  # read() wants it all: never hold the provider back
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        """The whole body has arrived."""
        return self._done

    async def read(self, limit: int = MAX_BODY) -> bytes:
        """The rest of the body, once it has all arrived.

        A body over ``limit`` bytes is a :class:`BodyTooLarge`: at once when its Content-Length
        says so, else as soon as the bytes pass it; the connection is dropped and nothing of the
        body is kept, so no more than ``limit`` bytes (and one network read) are ever held.
        """
        length = self.length
        if (length is not None and length > limit) or self._size > limit:
            self._too_large(limit)
        self._whole = True
        self._bound = limit
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
        if self._chunks:
            self._drop_chunks()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finished(reuse=self._done and self.keep_alive and self._error is None)

    def close(self) -> None:
        """Done with the answer, whatever its state: its connection is dropped, and whatever
        of the body was held is let go."""
        self._drop_chunks()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finished(reuse=False)

    # -- fed by the connection ------------------------------------------------------------

    def _wait(self) -> asyncio.Future[None]:
        if self._error is not None:
            raise _fresh(self._error)
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
        if self._size > self._bound:
            self._over_bound()
        self._wake()

    def _over_bound(self) -> None:
        if self._whole:
            self._too_large(self._bound, raise_it=False)
        elif not self._paused and self._connection is not None:
            self._paused = True
            self._connection.pause()

    def _too_large(self, limit: int, *, raise_it: bool = True) -> None:
        """Over the bound of a whole read: fail, drop the connection and what it held."""
        error = BodyTooLarge(limit)
        self._fail(error)
        self._drop_chunks()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.detach()
        if raise_it:
            raise _fresh(error)

    def _complete(self, keep_alive: bool) -> None:
        self._done = True
        self.keep_alive = keep_alive
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._done or self._error is not None:
            return
        self._error = error
        if self._whole:
            self._drop_chunks()  # a body read whole is useless in part
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(_fresh(error))

    def _drop_chunks(self) -> None:
        self._chunks.clear()
        self._size = 0

    def __repr__(self) -> str:
        state = "done" if self._done else "failed" if self._error is not None else "reading"
        return f"<WireResponse {self.status} {state}>"


class _Pool:
    """One origin's connections: the idle ones (newest last), how many places under the limit
    are taken, and the requests waiting, first come first."""

    __slots__ = ("count", "idle", "waiters")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        # Places taken: open connections (idle or in use), connections being made, and places
        # handed to a waiting request that has not used them yet.
        self.count = 0
        # Only pending futures: one handed something, given up or cancelled is taken off.
        self.waiters: deque[asyncio.Future[_Connection | _Grant]] = deque()

    def hand(self, grant: _Connection | _Grant) -> bool:
        """Give ``grant`` to the first request waiting; False when none waits."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(grant)
                return True
        return False


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, feeds its answer to a :class:`WireResponse`."""

    def __init__(
        self, wire: Wire, pool: _Pool, origin: Origin, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.wire = wire
        self.pool = pool
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # Handed to a waiting request that has not taken it yet: if it closes meanwhile, its
        # place stays that request's (see Wire._forget).
        self.handed = False
        self._poll: select.poll | None = None  # asks the socket, unwaited, if it has input
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

    def usable(self) -> bool:
        """Fit to be written again: open, and nothing has arrived on it since its last answer,
        not even an end the loop has not seen yet (the keep-alive race; the module's
        docstring)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        return self._poll is None or not self._poll.poll(0)

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

    def detach(self) -> None:
        """The answer gave up (it failed on its own): nothing more is fed to it, and the
        connection is dropped."""
        self._response = None
        self._headers_ready = None
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
        sock = transport.get_extra_info("socket")  # under TLS too: the raw one
        if _POLL is not None and sock is not None:
            self._poll = _POLL()
            self._poll.register(sock.fileno(), select.POLLIN)

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
        self._poll = None
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
        elif lowered == b"content-length":
            response.length_known = True
            # llhttp refuses a malformed length; this is only what read()'s bound checks.
            response.length = int(value) if value.isdigit() else None
        elif lowered == b"transfer-encoding":
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
            response.length = None
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
            ready.set_exception(_fresh(error))
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
    """Keep-alive connection pools, one per :class:`Origin`; see the module's docstring.

    ``limit`` bounds each origin's open connections (those being made included): one origin
    can never take another's.
    """

    def __init__(self, *, limit: int = 1000, keepalive_timeout: float = 30.0) -> None:
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self._pools: dict[Origin, _Pool] = {}
        self._open: set[_Connection] = set()  # made, not yet closed: each holds its place
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | None,
        *,
        silence: float,
        wait: float | None = None,
    ) -> WireResponse:
        """Send ``head`` (request line and headers, ending with the blank line) and ``body``;
        the answer once its headers are in. ``silence`` bounds connecting and each wait for
        bytes; ``wait`` (``silence`` when not given) the wait for a connection when the origin
        is at its limit (then :class:`PoolTimeout`). A failure or cancellation drops the
        connection."""
        wait = silence if wait is None else wait
        connection = await self._connection(origin, silence, wait)
        reused = connection.sent > 0
        try:
            return await self._exchange(connection, head, body, silence)
        except (BodyCut, ConnectionResetError, BrokenPipeError):
            if not reused or connection.heard or not head.startswith(b"GET "):
                raise
        # A GET on a kept-alive connection that closed under it unanswered (the module's
        # docstring): once more, on a new one.
        connection = await self._connection(origin, silence, wait, fresh=True)
        return await self._exchange(connection, head, body, silence)

    @staticmethod
    async def _exchange(
        connection: _Connection, head: bytes, body: bytes | None, silence: float
    ) -> WireResponse:
        ready = connection.send(head, body, silence)
        try:
            return await ready
        except BaseException:
            del ready  # the future holds the failure: not this frame in its traceback too
            connection.abort()
            raise

    async def aclose(self) -> None:
        """Close every connection; the wire cannot be used again."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for pool in self._pools.values():
            pool.idle.clear()
            while pool.hand(_Grant.CLOSED):
                pass
        for connection in list(self._open):
            connection.abort()

    # -- the pools ------------------------------------------------------------------------

    async def _connection(
        self, origin: Origin, silence: float, wait: float, *, fresh: bool = False
    ) -> _Connection:
        """An idle connection to ``origin`` (unless ``fresh``), else a new one within its
        limit, else what is handed first to the requests waiting, within ``wait`` seconds."""
        if self._closed:
            raise ConnectionError("the client is closed")
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool()
        if not pool.waiters:  # else everything freed goes to those already waiting
            idle = pool.idle
            while idle and not fresh:
                connection = idle.pop()
                if connection.usable():
                    return connection
                connection.abort()  # its place is free again
            if pool.count < self.limit:
                pool.count += 1
                return await self._connect(pool, origin, silence)
            if idle:  # fresh, at the limit: the oldest idle connection makes room
                self._retire(idle.pop(0))
                return await self._connect(pool, origin, silence)
        grant = await self._queue(pool, origin, wait)
        if grant is _Grant.PLACE:
            return await self._connect(pool, origin, silence)
        assert isinstance(grant, _Connection)
        grant.handed = False
        if grant.closed:  # closed since it was handed: its place was kept (_forget)
            return await self._connect(pool, origin, silence)
        if fresh or not grant.usable():
            self._retire(grant)
            return await self._connect(pool, origin, silence)
        return grant

    async def _queue(self, pool: _Pool, origin: Origin, wait: float) -> _Connection | _Grant:
        """Wait behind the requests already waiting for what is handed next: a connection, or
        a place (:attr:`_Grant.PLACE`, then this request holds it)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection | _Grant] = loop.create_future()
        pool.waiters.append(waiter)
        timer = loop.call_later(wait, _give_up, pool.waiters, waiter)
        try:
            grant = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed something in the moment it was cancelled: it goes to the next.
                self._hand_on(pool, waiter.result())
            else:
                waiter.cancel()  # nothing can be handed to it now
                _discard(pool.waiters, waiter)
            raise
        finally:
            timer.cancel()
        if grant is _Grant.EXPIRED:
            raise PoolTimeout(
                f"no connection to {origin.host}:{origin.port} was free within {wait:g}s "
                f"(all {self.limit} busy)"
            )
        if grant is _Grant.CLOSED:
            raise ConnectionError("the client is closed")
        return grant

    def _hand_on(self, pool: _Pool, grant: _Connection | _Grant) -> None:
        """What a cancelled request was handed goes to the next one (or back to the pool)."""
        if isinstance(grant, _Connection):
            grant.handed = False
            if grant.closed:
                self._free_place(pool)
            else:
                self._put_back(grant)
        elif grant is _Grant.PLACE:
            self._free_place(pool)

    async def _connect(self, pool: _Pool, origin: Origin, silence: float) -> _Connection:
        """A new connection, in the place the caller holds (freed again if it fails)."""
        loop = asyncio.get_running_loop()
        try:
            if self._closed:
                raise ConnectionError("the client is closed")
            async with asyncio.timeout(silence):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, pool, origin, loop),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                )
        except BaseException:
            self._free_place(pool)
            raise
        if connection.closed:  # lost before we got it: it never counted as open
            self._free_place(pool)
            raise BodyCut("the connection closed as it was made")
        self._open.add(connection)
        if self._closed:
            connection.abort()
            raise ConnectionError("the client is closed")
        return connection

    def _free_place(self, pool: _Pool) -> None:
        """A place under the limit is free: the first request waiting takes it, or it is
        counted free."""
        if not (pool.waiters and pool.hand(_Grant.PLACE)):
            pool.count -= 1

    def _retire(self, connection: _Connection) -> None:
        """Drop ``connection`` but keep its place: the caller connects in it."""
        self._open.discard(connection)  # so that _forget frees nothing
        connection.abort()

    def _put_back(self, connection: _Connection) -> None:
        if self._closed:
            connection.abort()
            return
        pool = connection.pool
        if pool.waiters and pool.hand(connection):
            connection.handed = True
            return
        connection.idle_since = connection.loop.time()
        pool.idle.append(connection)
        if self._sweep is None:
            self._sweep = connection.loop.call_later(self.keepalive_timeout, self._sweep_idle)

    def _forget(self, connection: _Connection) -> None:
        """``connection`` closed: its place is freed (kept, if it was handed to a request that
        has not taken it yet: that request connects in it)."""
        if connection in self._open:
            self._open.discard(connection)
            pool = connection.pool
            if connection in pool.idle:
                pool.idle.remove(connection)
            if not connection.handed:
                self._free_place(pool)

    def _sweep_idle(self) -> None:
        self._sweep = None
        oldest_allowed = asyncio.get_running_loop().time() - self.keepalive_timeout
        remaining = False
        for pool in self._pools.values():
            for connection in [c for c in pool.idle if c.idle_since <= oldest_allowed]:
                connection.abort()
            remaining = remaining or bool(pool.idle)
        if remaining and not self._closed:
            self._sweep = asyncio.get_running_loop().call_later(
                self.keepalive_timeout / 2, self._sweep_idle
            )

    def __repr__(self) -> str:
        idle = sum(len(pool.idle) for pool in self._pools.values())
        waiting = sum(len(pool.waiters) for pool in self._pools.values())
        return (
            f"<Wire open={len(self._open)} idle={idle} waiting={waiting} "
            f"limit={self.limit} per origin>"
        )


def _give_up(
    waiters: deque[asyncio.Future[_Connection | _Grant]],
    waiter: asyncio.Future[_Connection | _Grant],
) -> None:
    if not waiter.done():
        waiter.set_result(_Grant.EXPIRED)
        _discard(waiters, waiter)


def _discard(
    waiters: deque[asyncio.Future[_Connection | _Grant]],
    waiter: asyncio.Future[_Connection | _Grant],
) -> None:
    with contextlib.suppress(ValueError):  # already taken off by a hand-over
        waiters.remove(waiter)
