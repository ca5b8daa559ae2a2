"""Hostile answers: what a broken or malicious provider sends, made while it is sent.

``Profile.hostile`` (``x-mock-hostile: MODE[,MODE...]``, one drawn per request) names them. Each
speaks OpenAI's wire format as far as it answers at all, and none is held in memory: a body is an
iterator of pieces (mostly the same 64 KiB piece again and again) that the writer sends as fast
as the client reads it, until the client leaves.

- ``huge``: a valid answer with ``hostile_bytes`` bytes of content, its Content-Length exact.
  Streamed: the role chunk, one chunk holding all that content (one SSE line that long), the
  finish chunk, [DONE].
- ``lying-length``: ``Content-Length: 10000000000``, then an answer that never ends: a
  completion whose content goes on for ever (a stream: the role chunk, then empty-delta chunks
  for ever).
- ``endless-chunked``: the same never-ending answer, chunked, without its last chunk.
- ``empty-deltas``: SSE: the role chunk, then chunks whose delta content is ``""``, for ever:
  nothing ever commits. Sent to plain requests too, as by a provider that ignores
  ``stream: false``.
- ``endless-line``: SSE: one ``data:`` line that never ends (no newline, ever).
- ``key-echo``: an error in OpenAI's shape (status ``error_status``, default 400) whose
  ``type``, ``code`` and ``message`` quote the key of the request's ``Authorization`` header; the
  message also carries a forged log line and an ANSI screen clear (:data:`FORGED`). A 401 or
  403 is worded as a refused key, any other status as a bad request (rule 9 material).
- ``key-text``: a plain-text error (the same status) in which the key straddles character
  :data:`KEY_AT` (1,000), where a careless gateway cuts the text before it redacts.
- ``drip``: a normal, valid answer, one byte every ``drip_interval`` seconds.

On ``GET /v1/models`` the same modes answer a model list (``huge``: one model whose ``owned_by``
is that long; the endless ones: an ``owned_by`` that never ends); the stream modes send their
SSE there too. A connection accepted and never answered is the ``hang`` fault.
"""

from __future__ import annotations

import http
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from failover.mock_upstream.wire import (
    DONE,
    EVENT_STREAM,
    JSON,
    Content,
    completion,
    models_body,
    stream_events,
)

__all__ = [
    "FORGED",
    "KEY_AT",
    "LIE",
    "Answer",
    "Shapes",
    "answer",
    "bare_key",
    "key_echo",
    "key_text",
    "tokens",
]

LIE = 10_000_000_000
"""The Content-Length ``lying-length`` announces: 10 GB."""
FORGED = "\nCRITICAL forged\x1b[2J"
"""What ``key-echo`` and ``key-text`` append to their message: a newline, a log line that
pretends to be the gateway's, and the ANSI escape that clears a terminal."""
KEY_AT = 1000
"""The character of a ``key-text`` body that falls in the middle of the key."""

_PIECE = 64 * 1024
_WORDS = b"lorem ipsum dolor sit amet "
_FILLER = _WORDS * (_PIECE // len(_WORDS))  # whole words, so that pieces join into text
_HOLE = b"\x00hole\x00"  # raw NULs: orjson escapes them, so no request value can contain it
_DRIP_TEXT = "A valid answer, one byte at a time."
_MADE_WITH = "Request made with "


@dataclass(frozen=True, slots=True)
class Answer:
    """A planned answer: status, content type, its body as pieces, how to frame and pace them.

    ``length`` is the Content-Length announced (None: chunked); ``delay`` the seconds between
    two pieces. ``parts`` may never end.
    """

    status: int
    content_type: str
    parts: Iterable[bytes]
    length: int | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Shapes:
    """One request's answer with a hole where hostile content goes, plain and streamed.

    ``body`` is the plain answer (a completion, or a model list) split at its content; ``role``
    the first stream event; ``event`` a content chunk split at its content; ``end`` what follows
    the content chunk (the finish chunk, the usage chunk when asked, ``[DONE]``); ``stream``
    whether the client asked for a stream.
    """

    body: tuple[bytes, bytes]
    role: bytes
    event: tuple[bytes, bytes]
    end: bytes
    stream: bool

    @classmethod
    def chat(
        cls,
        ident: bytes,
        created: int,
        model: bytes,
        prompt: int,
        *,
        stream: bool,
        include_usage: bool,
        tokens: int = 0,
    ) -> Shapes:
        """The shapes of a chat completion; ``model`` is already JSON (a quoted string)."""
        hole = Content(b'"' + _HOLE + b'"', (b'{"content":"' + _HOLE + b'"}',), tokens)
        body = completion(ident, created, model, prompt, hole)
        role, event, *end = stream_events(ident, created, model, prompt, hole, include_usage)
        return cls(_split(body), role, _split(event), b"".join((*end, DONE)), stream)

    def with_models(self) -> Shapes:
        """These shapes with a model list as the plain answer, its hole in ``owned_by``."""
        head, tail = models_body(["mock-model"], "\x00").split(b"\\u0000")
        return Shapes((head, tail), self.role, self.event, self.end, stream=False)

    def empty_events(self) -> bytes:
        """About 64 KiB of chunks whose delta content is empty (whole events)."""
        empty = self.event[0] + self.event[1]
        return empty * max(1, _PIECE // len(empty))

    def normal(self) -> bytes:
        """A short valid answer in these shapes (plain, or streamed when asked)."""
        text = orjson.dumps(_DRIP_TEXT)[1:-1]
        if self.stream:
            return self.role + self.event[0] + text + self.event[1] + self.end
        return self.body[0] + text + self.body[1]


def answer(
    mode: str, shapes: Shapes, *, status: int, authorization: str, size: int, drip_interval: float
) -> Answer:
    """The answer of hostile ``mode`` (see the module docstring); ``status`` is used by the
    error modes only, ``size`` by ``huge``, ``drip_interval`` by ``drip``."""
    parts: Iterable[bytes]
    if mode == "key-echo":
        body = key_echo(status, authorization)
        return Answer(status, JSON, (body,), len(body))
    if mode == "key-text":
        body = key_text(status, authorization).encode()
        return Answer(status, "text/plain; charset=utf-8", (body,), len(body))
    if mode == "empty-deltas":
        return Answer(200, EVENT_STREAM, _then_forever(shapes.role, shapes.empty_events()))
    if mode == "endless-line":
        return Answer(200, EVENT_STREAM, _then_forever(shapes.event[0], _FILLER))
    if mode == "drip":
        body = shapes.normal()
        parts = (body[i : i + 1] for i in range(len(body)))
        length = None if shapes.stream else len(body)
        return Answer(200, _type(shapes), parts, length, drip_interval)
    if mode == "huge":
        head, tail = (shapes.role + shapes.event[0], shapes.event[1] + shapes.end)
        if not shapes.stream:
            head, tail = shapes.body
        parts = itertools.chain((head,), _content(size), (tail,))
        length = None if shapes.stream else len(head) + size + len(tail)
        return Answer(200, _type(shapes), parts, length)
    if mode in ("lying-length", "endless-chunked"):
        if shapes.stream:
            parts = _then_forever(shapes.role, shapes.empty_events())
        else:
            parts = _then_forever(shapes.body[0], _FILLER)
        return Answer(200, _type(shapes), parts, LIE if mode == "lying-length" else None)
    raise ValueError(f"unknown hostile mode {mode!r}")


def tokens(mode: str | None, size: int) -> int:
    """The completion tokens an answer of ``mode`` claims: its words (``huge``: of ``size``
    bytes of content)."""
    if mode == "huge":
        return round(size * 5 / len(_WORDS))
    return len(_DRIP_TEXT.split())


def bare_key(authorization: str) -> str:
    """The key of an ``Authorization`` header value (``Bearer KEY``)."""
    scheme, _, key = authorization.strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else authorization.strip()


def key_echo(status: int, authorization: str) -> bytes:
    """An OpenAI error object quoting the key in ``type``, ``code`` and ``message``.

    A 401 or 403 words it as a refused key; any other status as a bad request (a 400 that a
    gateway passes to its client as the provider worded it, rule 9).
    """
    key = bare_key(authorization)
    if status in (401, 403):
        message, code = f"Incorrect API key provided: {authorization}.", "invalid_api_key"
    else:
        message = f"Invalid value for 'messages' in a request made with {authorization}."
        code = "invalid_value"
    error = {
        "message": message + FORGED,
        "type": f"invalid_request_error:{key}",
        "param": None,
        "code": f"{code}:{key}",
    }
    return orjson.dumps({"error": error})


def key_text(status: int, authorization: str) -> str:
    """A plain-text error in which the key's middle character is at :data:`KEY_AT`; worded as
    :func:`key_echo` words its message."""
    key = bare_key(authorization)
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    refused = "the key was refused" if status in (401, 403) else "the request is not valid"
    head = f"{status} {reason}: {refused}. "
    lead = "Details follow. "
    start = KEY_AT - len(key) // 2
    pad = max(0, start - len(head) - len(lead) - len(_MADE_WITH))
    text = head + "." * pad + lead + _MADE_WITH + key
    return text + FORGED + "\nSee the documentation for how to send a request.\n"


def _type(shapes: Shapes) -> str:
    return EVENT_STREAM if shapes.stream else JSON


def _split(shaped: bytes) -> tuple[bytes, bytes]:
    head, tail = shaped.split(_HOLE)
    return head, tail


def _then_forever(first: bytes, piece: bytes) -> Iterator[bytes]:
    return itertools.chain((first,), itertools.repeat(piece))


def _content(size: int) -> Iterator[bytes]:
    whole, rest = divmod(size, len(_FILLER))
    yield from itertools.repeat(_FILLER, whole)
    if rest:
        yield _FILLER[:rest]
