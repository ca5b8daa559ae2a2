"""An incremental Server-Sent Events parser over a response's byte stream.

It follows the WHATWG event-stream rules that the three families rely on: ``event:`` and ``data:``
fields, multi-line data joined with newlines, ``:`` comment lines (OpenRouter's
``: OPENROUTER PROCESSING`` keep-alives), a blank line to dispatch, and LF, CRLF or CR line ends
(Gemini sends CRLF), including a CRLF split across two network reads.

>>> parser = SSEParser()
>>> parser.feed(b"event: ping\\ndata: {}\\n\\ndata: a\\r\\ndata: b\\r\\n")
[SSEEvent(event='ping', data='{}', id=None)]
>>> parser.feed(b"\\r\\n")
[SSEEvent(event='message', data='a\\nb', id=None)]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from failover.errors import MalformedResponse

__all__ = ["SSEEvent", "SSEParser", "event_object", "iter_events"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (``message`` when unnamed), data and last event id."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events that are complete."""

    __slots__ = ("_buffer", "_data", "_event", "_has_data", "_id", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._has_data = False
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
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        events: list[SSEEvent] = []
        lines = buffer.splitlines(keepends=True)  # bytes split only on LF, CRLF and CR
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buffer = lines.pop()
        else:
            self._buffer = b""
            # Only a CR at the very end of the bytes read so far may be half of a CRLF.
            self._skip_lf = bool(lines) and lines[-1].endswith(b"\r")
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            else:
                self._field(line)
        return events

    def close(self) -> list[SSEEvent]:
        """At the end of the stream: the last event if its lines were complete.

        A final line cut mid-way (no line end) is dropped, so a torn ``data: {...`` is never
        passed on as if it were whole.
        """
        self._buffer = b""
        event = self._dispatch()
        return [event] if event is not None else []

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return  # a comment: keep-alive
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
            self._has_data = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")
        # "retry" and unknown fields are ignored: reconnection is not ours to do.

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_data:
            self._event = ""
            return None
        data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        event = SSEEvent(self._event or "message", data, self._id)
        self._data = []
        self._has_data = False
        self._event = ""
        return event


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[SSEEvent]:
    """The events of a byte stream, as they complete; the last one at its end."""
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event


def event_object(event: SSEEvent, deployment: str) -> dict[str, Any]:
    """The event's data as a JSON object; anything else is a MalformedResponse."""
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise MalformedResponse(
            "a stream event is not valid JSON", deployment=deployment, status=200
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponse("a stream event is not an object", deployment=deployment)
    return data
