"""What a surface is: a codec between one API's wire shape and the gateway's front door.

A :class:`Codec` parses a request body into a :class:`Parsed` (the route asked for, streamed or
not, and the engine's :class:`~failover.types.ChatRequest`), and renders what the gateway gave
back: a result as a JSON body, a committed stream chunk by chunk (its :class:`StreamEncoder`),
an error (:class:`~failover.server.status.Problem`) in its API's error shape. Everything else a
request needs (the body read within bounds, the route and ids, the engine, the report, clients
that leave, shutdown) is the same for every surface and lives in
:mod:`failover.server.surface`.

:func:`read_object` is the JSON every surface reads: an object, nested at most
:data:`~failover.jsondepth.MAX_DEPTH` levels deep.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import orjson

from failover.call import Call, CallStream, Surface
from failover.errors import InvalidRequest
from failover.jsondepth import MAX_DEPTH, nested_deeper
from failover.server.answers import ErrorAnswer, Header
from failover.server.status import Problem
from failover.types import ChatRequest, ChatResult, StreamChunk

__all__ = ["Codec", "Parsed", "StreamEncoder", "read_object"]


class Parsed(NamedTuple):
    """A checked request: the route asked for, streamed or not, and the request itself."""

    model: str
    stream: bool
    request: ChatRequest


class StreamEncoder(Protocol):
    """One stream's events, in its surface's wire shape (made before the stream opens, so that
    a stream cut at shutdown can still be ended in it)."""

    def start(self, stream: CallStream) -> bytes:
        """The bytes to send at the commit, before the first chunk (``b""``: none)."""
        ...

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The bytes for one chunk (``b""``: nothing to send for it)."""
        ...

    def done(self) -> bytes:
        """The bytes that end a stream that ended well."""
        ...

    def failed(self, problem: Problem) -> bytes:
        """The bytes that end a stream that failed after its commit (never a silent end)."""
        ...


class Codec(Protocol):
    """One API's wire shape: requests in, results, streams and errors out."""

    surface: Surface
    path: str
    content_type: Header
    """The Content-Type of a stream's answer."""

    def parse(self, body: bytes) -> Parsed:
        """The checked request; raises :class:`~failover.errors.InvalidRequest`."""
        ...

    def completion(self, result: ChatResult) -> bytes:
        """A whole answer's JSON body."""
        ...

    def encoder(self, call: Call) -> StreamEncoder:
        """The encoder of one stream (it may keep state from chunk to chunk)."""
        ...

    def error(self, problem: Problem) -> ErrorAnswer:
        """An error answer in this API's shape."""
        ...


_MAX_NAMED = 64


def read_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object; raises :class:`~failover.errors.InvalidRequest` naming what
    is wrong (not JSON, not an object, nested past :data:`~failover.jsondepth.MAX_DEPTH`).

    >>> read_object(b'{"model": "intent"}')
    {'model': 'intent'}
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):  # orjson's own, past 1024 levels
            raise _too_deep(None) from None
        raise InvalidRequest(
            "the body is not valid JSON (UTF-8, no lone surrogates)", code="invalid_json"
        ) from None
    if type(data) is not dict:
        raise InvalidRequest("the body must be a JSON object", code="invalid_type")
    if nested_deeper(data):
        raise _too_deep(data)
    return data


def _too_deep(data: dict[str, Any] | None) -> InvalidRequest:
    # The field that is too deep (found only on this error path): one level below the body.
    param = None
    if data is not None:
        param = next((key for key, value in data.items() if nested_deeper([value])), None)
        if param is not None and (len(param) > _MAX_NAMED or not param.isprintable()):
            param = None  # a client's odd field name is not repeated back
    where = f" (in '{param}')" if param is not None else ""
    return InvalidRequest(
        f"the body nests arrays and objects deeper than {MAX_DEPTH} levels{where}",
        param=param,
        code="json_too_deep",
    )
