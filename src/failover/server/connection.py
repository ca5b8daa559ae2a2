"""One client connection, held to limits uvicorn's httptools protocol does not set itself.

:class:`GuardedHttpTools` is uvicorn's protocol with :class:`ConnectionLimits`: a request line and
headers past their size or count are refused (414, 431), and a client that does not send its
headers, or then its body, in time is answered 408 and closed (slowloris), so that no client holds
a connection, or the worker's memory, for long. Refusals are OpenAI-shaped and close the
connection; bad HTTP is answered 400 the same way.

Towards the client, at most ``write_buffer_bytes`` of an answer wait in the connection's buffer
before the sender waits (a stream's next chunk, and through it the upstream's connection), and a
client that takes nothing of what is buffered for ``write_timeout`` is taken for gone: its
connection is reset, and its request is cancelled as if it had disconnected (rule 6: every
attempt cancelled, upstream connections closed, no health change; recorded as ``cancelled``).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from failover.server import answers
from failover.server.answers import CONNECTION_CLOSE, ErrorAnswer

__all__ = ["ConnectionLimits", "GuardedHttpTools"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How much one request's head may weigh, how long a client may take to send it, and to
    read its answer.

    ``head_timeout`` runs from the connection (or, on a kept-alive one, the next request's first
    byte) to the end of the headers; ``body_timeout`` from there to the end of the body. A
    client is thus answered or closed within their sum (25 s by default), however slowly it
    sends. The sizes are Apache's (100 header fields, an 8 KiB request line), with 64 KiB for
    the whole head.

    ``write_buffer_bytes`` is how much of an answer the connection holds for a client before the
    sender waits (the transport's high-water mark; it resumes under a quarter of it);
    ``write_timeout`` how long a client may take nothing of what is buffered for it (over that
    mark, or left at the end of an answer) before it is taken for gone, as nginx's
    ``send_timeout``: a slow client that reads is served, one that stopped is not waited for.

    >>> ConnectionLimits().head_timeout + ConnectionLimits().body_timeout
    25.0
    """

    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_url_bytes: int = 8 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 15.0
    write_buffer_bytes: int = 64 * 1024
    write_timeout: float = 15.0


def _refusal(status: int, message: str, code: str) -> ErrorAnswer:
    return answers.error(status, message, code, headers=(CONNECTION_CLOSE,))


_BAD_HTTP = _refusal(400, "the request is not valid HTTP/1.1", "invalid_http")
_SLOW = _refusal(408, "the request was not sent in time", "request_timeout")
_URL_TOO_LONG = _refusal(414, "the request target is too long", "url_too_long")
_HEAD_TOO_LARGE = _refusal(
    431, "the request headers are too large or too many", "request_header_fields_too_large"
)


_LINGER_SECONDS = 2.0
"""How long a refused connection stays half-open for the client to read its answer."""


class _Reading(enum.Enum):
    HEAD = "head"  # a request's line and headers (or, on a new connection, nothing yet)
    BODY = "body"
    NOTHING = "nothing"  # the request was read; the app answers it, or the connection idles


class _Refused(Exception):
    """Raised in a parser callback to stop the parser; the answer waits on the protocol."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, held to :class:`ConnectionLimits`.

    uvicorn itself arms a timer only between requests (keep-alive): a connection that never
    sends its headers, or trickles them, or its body, is held forever, and headers of any size or
    number are buffered. Here a deadline runs while a request is being read, armed only when a
    read leaves the request incomplete (a request that arrives whole costs no timer), and the
    head is measured as it arrives. Refusals are OpenAI-shaped, like every answer of the gateway,
    and close the connection. uvicorn's sender waits while the buffer towards the client is full,
    with no bound; here a deadline runs while it is (or while a close waits for it), and a
    client that takes nothing of it in time is reset.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = b""
        self.headers = []
        self._reading = _Reading.HEAD
        self._head_bytes = 0  # of the head being read, in the reads before this one
        self._read_size = 0  # of this read
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._unread_bytes = 0  # buffered towards the client when its deadline was armed
        self._refused: ErrorAnswer | None = None
        self._dropping = False

    @classmethod
    def bounded_by(cls, limits: ConnectionLimits) -> type[GuardedHttpTools]:
        """This protocol with ``limits`` (uvicorn makes one instance per connection)."""
        if limits == cls.limits:
            return cls

        class Bounded(cls):  # type: ignore[valid-type,misc]
            pass

        Bounded.limits = limits
        return Bounded

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=self.limits.write_buffer_bytes)
        self._arm(self.limits.head_timeout)  # a connection that sends nothing is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._writable()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The buffer towards the client is over its mark: the sender waits, and the client
        must take some of it within ``write_timeout``."""
        super().pause_writing()
        self._watch_writes()

    def resume_writing(self) -> None:
        self._writable()
        super().resume_writing()
        self._closing_unread()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._closing_unread()  # an answer that closes its connection (connection: close)

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self._closing_unread()

    def shutdown(self) -> None:
        super().shutdown()
        self._closing_unread()

    def _closing_unread(self) -> None:
        # A close waits for what is buffered, under the mark too: the client must take it.
        transport = self.transport
        if transport.is_closing() and transport.get_write_buffer_size():
            self._watch_writes()

    def _watch_writes(self) -> None:
        if self._write_deadline is None:
            self._unread_bytes = self.transport.get_write_buffer_size()
            self._write_deadline = self.loop.call_later(self.limits.write_timeout, self._unread)

    def _writable(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _unread(self) -> None:
        self._write_deadline = None
        buffered = self.transport.get_write_buffer_size()
        if not buffered:
            return  # all taken
        if buffered < self._unread_bytes:
            self._watch_writes()  # the client took some: slow, not gone (nginx's send_timeout)
            return
        # It took nothing for write_timeout: it is gone. A reset drops the buffer at once (a
        # close would wait for it to be read); uvicorn then sees the connection lost, so the
        # request's disconnect watch cancels it, and a sender waiting for the buffer to drain
        # goes on (and sends nothing more).
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._dropping:
            return  # refused: only its answer (or the one due before it) goes out, then close
        if self._reading is _Reading.NOTHING:
            self._reading, self._head_bytes = _Reading.HEAD, 0  # the next request begins
        self._read_size = len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._reading is _Reading.HEAD:
            # A read may end with part of a head: count it all (a pipelined request's
            # predecessor included), so the parser never holds more than the limit and one read.
            self._head_bytes += self._read_size
            refusal = self._head_refusal(self._head_bytes)
            if refusal is not None:
                self._refuse(refusal)
            elif self._deadline is None:
                self._arm(self.limits.head_timeout)
        elif self._reading is _Reading.BODY and self._deadline is None:
            self._arm(self.limits.body_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading, self._head_bytes = _Reading.HEAD, 0

    def on_headers_complete(self) -> None:
        # The head ended in this read, after _head_bytes of earlier ones: it is measured header
        # by header only when that bound is over the limit (a usual head comes in one read).
        bound = self._head_bytes + self._read_size
        if bound > self.limits.max_head_bytes:
            bound = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        refusal = self._head_refusal(bound)
        if refusal is not None:
            self._refused = refusal
            raise _Refused  # the parser stops; send_400_response() answers it
        if self._deadline is not None:
            self._disarm()
        self._reading = _Reading.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._deadline is not None:
            self._disarm()
        self._reading = _Reading.NOTHING
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers when the parser fails: ours, or a refusal of the head."""
        refusal, self._refused = self._refused, None
        self._refuse(refusal or _BAD_HTTP)

    def _head_refusal(self, size: int) -> ErrorAnswer | None:
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            return _URL_TOO_LONG
        if len(self.headers) > limits.max_headers or size > limits.max_head_bytes:
            return _HEAD_TOO_LARGE
        return None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._reading is _Reading.HEAD and self._head_bytes == 0:
            self.transport.close()  # nothing was asked: nothing to answer
        elif self._reading is not _Reading.NOTHING:
            self._refuse(_SLOW)

    def _refuse(self, answer: ErrorAnswer) -> None:
        """Answer ``answer`` when nothing else is due, then close; drop what the client sends."""
        self._disarm()
        if self.transport.is_closing() or self._dropping:
            return
        self._dropping = True
        cycle = self.cycle
        its_body = self._reading is _Reading.BODY  # the cycle is the request being read
        if cycle is not None and not cycle.response_complete:
            if not its_body or cycle.response_started:
                # An earlier answer (or this one) is under way: it goes out, then uvicorn closes.
                cycle.keep_alive = False
                return
            # The app still waits for this body: it sees the client gone, its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if not (its_body and cycle is not None and cycle.response_complete):
            self.transport.write(self._raw(answer))
        self._linger()

    def _raw(self, answer: ErrorAnswer) -> bytes:
        phrase = HTTPStatus(answer.status).phrase.encode()
        headers = [*self.server_state.default_headers, *answer.headers]
        lines = [b"HTTP/1.1 %d %s" % (answer.status, phrase), *(b"%s: %s" % h for h in headers)]
        return b"\r\n".join(lines) + b"\r\n\r\n" + answer.body

    def _linger(self) -> None:
        # Closing with unread input would reset the connection, and the client could lose the
        # answer: end the output instead, drop the input, and close when the client does (at
        # most _LINGER_SECONDS later).
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._deadline = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
