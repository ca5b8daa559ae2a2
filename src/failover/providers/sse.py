"""An incremental Server-Sent Events parser over a response's byte stream.

It follows the WHATWG event-stream rules that the three families rely on: ``event:`` and ``data:``
fields, multi-line data joined with newlines, ``:`` comment lines (OpenRouter's
``: OPENROUTER PROCESSING`` keep-alives), a blank line to dispatch, and LF, CRLF or CR line ends
(Gemini sends CRLF), including a CRLF split across two network reads.

What an upstream can make it hold is bounded, and the work it can make it do is linear: a line
still without its end is kept as the pieces that came (each read's bytes are scanned for line
ends once, never the whole line again), and a line, or an event's data, over ``limit`` bytes
(:data:`MAX_EVENT` by default) is a :class:`~failover.errors.MalformedResponse` naming the
bound; what was held is let go before it is raised. An event's data is held as the one buffer
of bytes it will be decoded from, its lines joined by their newlines, so the bound is what it
holds: an empty ``data:`` line is the newline it adds (a line of nothing is not free: a stream
of them, never ending its event, would otherwise grow a list without limit), and no line holds
an object of its own.

>>> parser = SSEParser()
>>> parser.feed(b"event: ping\\ndata: {}\\n\\ndata: a\\r\\ndata: b\\r\\n")
[SSEEvent(event='ping', data='{}', id=None)]
>>> parser.feed(b"\\r\\n")
[SSEEvent(event='message', data='a\\nb', id=None)]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from failover.errors import MalformedResponse

__all__ = ["MAX_EVENT", "SSEEvent", "SSEParser", "event_object", "iter_events"]

MAX_EVENT: Final = 1024 * 1024
"""The bytes one line, or one event's data, may take. A chunk of a completion stream is a few
hundred bytes; a megabyte without a line end, or in one event, is a broken or hostile upstream."""

_BOM = b"\xef\xbb\xbf"
_INVALID: Final = object()


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (``message`` when unnamed), data and last event id."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events that are complete.

    ``limit`` bounds a line and an event's data (bytes); ``deployment`` names the upstream in
    the error raised past it.
    """

    __slots__ = (
        "_data",
        "_deployment",
        "_event",
        "_has_data",
        "_id",
        "_limit",
        "_partial",
        "_partial_size",
        "_skip_lf",
        "_started",
    )

    def __init__(self, *, limit: int = MAX_EVENT, deployment: str = "") -> None:
        self._limit = limit
        self._deployment = deployment
        self._partial: list[bytes] = []  # the pieces of a line whose end has not come yet
        self._partial_size = 0
        # The current event's data lines, joined by newlines: decoded once, when it dispatches.
        self._data = bytearray()
        self._has_data = False  # a data line came (its data may be empty)
        self._event = ""
        self._id: str | None = None
        self._skip_lf = False  # the last read ended in CR: a leading LF belongs to that line end
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk``; return the events it completed, in order."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            # No line end: the bytes are held, and only they were looked at.
            if chunk:
                size = self._partial_size + len(chunk)
                if size > self._limit:
                    raise self._too_large("a line")
                self._partial.append(chunk)
                self._partial_size = size
            return []
        partial = self._partial
        if partial:
            partial.append(chunk)
            buffer = b"".join(partial)
            partial.clear()
        else:
            buffer = chunk
        if not self._started:
            self._started = True  # a BOM split over reads was held above: it is whole here
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        lines = buffer.splitlines()  # bytes split only on LF, CRLF and CR
        limit = self._limit
        last = buffer[-1]
        if last != 10 and last != 13:  # no line end yet: the last line is held
            held = lines.pop()
            if len(held) > limit:
                raise self._too_large("a line")
            partial.append(held)
            self._partial_size = len(held)
        else:
            self._partial_size = 0
            # Only a CR at the very end of the bytes read so far may be half of a CRLF.
            self._skip_lf = last == 13
        if len(buffer) > limit:
            for line in lines:  # a line that came whole in one read is bounded as if held
                if len(line) > limit:
                    raise self._too_large("a line")
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if self._has_data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    self._event = ""
                continue
            if line[:5] == b"data:":  # nearly every line: parsed here, not in _field
                value = line[6:] if line[5:6] == b" " else line[5:]
            elif line == b"data":  # "data" alone: an empty data line
                value = b""
            else:
                self._field(line)
                continue
            if self._has_data:
                data.append(10)  # the newline that joins it to the line before
            else:
                self._has_data = True
            data += value
            if len(data) > limit:
                raise self._too_large("an event")
        return events

    def close(self) -> list[SSEEvent]:
        """At the end of the stream: the last event if its lines were complete.

        A final line cut mid-way (no line end) is dropped, so a torn ``data: {...`` is never
        passed on as if it were whole.
        """
        self._partial = []
        self._partial_size = 0
        if not self._has_data:
            return []
        return [self._dispatch()]

    def _too_large(self, what: str) -> MalformedResponse:
        """The error for a line or event over the bound, all that was held let go first."""
        self._partial = []
        self._partial_size = 0
        self._data = bytearray()
        self._has_data = False
        return MalformedResponse(
            f"the event stream sent {what} over {self._limit} bytes (its bound)",
            deployment=self._deployment,
            status=200,
        )

    def _field(self, line: bytes) -> None:
        """Any line but data lines (see :meth:`feed`)."""
        if line[:1] == b":":
            return  # a comment: keep-alive
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")
        # "retry" and unknown fields are ignored: reconnection is not ours to do.

    def _dispatch(self) -> SSEEvent:
        # One decoding for the whole event: a UTF-8 sequence cannot span the newlines (ASCII).
        data = self._data.decode("utf-8", "replace")
        event = SSEEvent(self._event or "message", data, self._id)
        self._data = bytearray()  # a new one: clear() would keep a large event's buffer
        self._has_data = False
        self._event = ""
        return event


async def iter_events(
    chunks: AsyncIterator[bytes], *, limit: int = MAX_EVENT, deployment: str = ""
) -> AsyncIterator[SSEEvent]:
    """The events of a byte stream, as they complete; the last one at its end."""
    parser = SSEParser(limit=limit, deployment=deployment)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event


def event_object(event: SSEEvent, deployment: str) -> dict[str, Any]:
    """The event's data as a JSON object; anything else is a MalformedResponse."""
    data = _loads(event.data)
    if data is _INVALID:
        raise MalformedResponse(
            "a stream event is not valid JSON", deployment=deployment, status=200
        )
    if not isinstance(data, dict):
        raise MalformedResponse("a stream event is not an object", deployment=deployment)
    return data


def _loads(data: str) -> Any:
    """The JSON value, or :data:`_INVALID` (orjson's error keeps the whole event: not raised)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _INVALID
