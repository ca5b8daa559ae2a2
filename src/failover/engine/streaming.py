"""Streams (rule 8): failover until the commit, then a stream that never ends silently.

A stream *commits* at its first chunk with a non-empty ``delta.content``, ``delta.tool_calls`` or
``delta.refusal``. Opening a stream up to that chunk is an attempt's :class:`Work`
(:data:`STREAM`): until then failover and hedging work as for any request, and the chunks before
it (the role, filter results, reasoning) are held. The engine then hands out a
:class:`CommittedStream`, which replays the held chunks and goes on reading the winner's
upstream. After the commit only the
deployment's ``timeout`` applies, as the longest gap between two chunks; a failure raises an
:class:`~failover.errors.UpstreamError` from the iterator (the server sends it as an error event),
never a clean end.

What the upstream may make us hold is bounded, since a stream that never commits is read until
the attempt's timeout, as fast as the provider sends:

- at most :data:`MAX_CHUNKS_BEFORE_COMMIT` chunks are read before the commit, and the chunks held
  weigh at most :data:`MAX_HELD_BYTES` (an estimate of their size in memory, :func:`weight`).
  Past either bound the attempt fails as ``malformed``, naming the bound, and what it held is
  let go at once (failover moves on; the deployment's health counts the failure);
- a chunk that carries nothing (:func:`carries_nothing`: empty deltas, no finish reason, no
  usage, nothing but the envelope) is counted but not held: replaying it would tell the client
  nothing. Only when no chunk at all was worth holding is the first such one kept, so that a
  stream that ends before any content still answers with a choice.

A provider that sends as fast as loopback allows never makes the reader wait: the wire hands out
buffered bytes without awaiting anything, and the loop would serve nobody else (``/health``
included) until the buffer ran dry. So both readers here give the loop one turn every
:data:`_TURN_EVERY` chunks, whether or not they had to wait for them (a counter and a mask test per
chunk; the turn itself is one ``call_soon``, a few microseconds, every 32 chunks).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from failover.engine.attempt import Attempt
from failover.engine.expiry import Expiry
from failover.errors import MalformedResponse, UpstreamError, UpstreamTimeout
from failover.providers.base import ChatProvider
from failover.types import AttemptRecord, ChatRequest, StreamChunk

__all__ = [
    "MAX_CHUNKS_BEFORE_COMMIT",
    "MAX_HELD_BYTES",
    "STREAM",
    "CommittedStream",
    "OpenedStream",
    "StreamWork",
    "carries_nothing",
    "commits",
    "weight",
]

logger = logging.getLogger(__name__)


MAX_CHUNKS_BEFORE_COMMIT: Final = 65_536
"""Chunks a stream may send before its commit. A real one sends its role chunk, perhaps a few
pings or filter results, and reasoning deltas (one per token at most); tens of thousands of
chunks with no content are a broken or hostile provider."""

MAX_HELD_BYTES: Final = 32 * 1024 * 1024
"""The estimated memory (:func:`weight`) the chunks held before the commit may take: about
30,000 reasoning deltas of one token each."""

_TURN_EVERY: Final = 32
"""Chunks read in a row before the reader gives the loop a turn (a power of two: a mask test)."""
_TURN_MASK: Final = _TURN_EVERY - 1

_ENVELOPE: Final = frozenset(
    {"id", "object", "created", "model", "system_fingerprint", "service_tier", "obfuscation"}
    | {"choices"}  # looked at apart
)
"""Top-level fields every chunk repeats (``obfuscation`` is OpenAI's random padding): they are
not what a chunk carries."""

_WEIGH_EVERY: Final = 8
"""Held chunks are weighed this many at a time: a normal stream holds one or two (its role), and
is never weighed; what is held unweighed is at most seven chunks."""

_COMMIT, _HOLD, _BLANK, _SHAPELESS = range(4)


def _kind(chunk: StreamChunk) -> int:
    """What a chunk read before the commit is: one to commit on, to hold, a blank, or not a
    ``chat.completion.chunk`` at all (``choices`` not a list of objects, a ``delta`` not one).

    The commit is looked for first, as cheaply as before there was anything else to tell: a
    normal stream reads two chunks here, its role and its first word. Exact classes, not
    ``isinstance``: chunks are decoded JSON.
    """
    choices = chunk.get("choices")
    if choices is None:
        choices = ()
    elif choices.__class__ is not list:
        return _SHAPELESS
    carries = False  # a delta says something (a role, reasoning, audio...)
    for choice in choices:
        if choice.__class__ is not dict:
            return _SHAPELESS
        delta = choice.get("delta")
        if delta is not None:
            if delta.__class__ is not dict:
                return _SHAPELESS
            if delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
                return _COMMIT
            if not carries:
                for item in delta.values():
                    if item:
                        carries = True
                        break
    if carries:
        return _HOLD
    for choice in choices:
        for name, value in choice.items():
            if value and name != "index" and name != "delta":
                return _HOLD  # a finish reason, logprobs, filter results
    for key, value in chunk.items():
        if value and key not in _ENVELOPE:
            return _HOLD  # usage, filter results, anything a provider adds
    return _BLANK


def commits(chunk: StreamChunk) -> bool:
    """Whether ``chunk`` carries content, tool calls or a refusal (the stream commits on it).

    >>> commits({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    False
    >>> commits({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    True
    """
    return _kind(chunk) == _COMMIT


def carries_nothing(chunk: StreamChunk) -> bool:
    """Whether a chunk that does not commit has nothing for the client: every value empty but
    the envelope (id, model, ...) and the choices' indexes.

    >>> carries_nothing({"id": "c1", "choices": [{"index": 0, "delta": {"content": ""}}]})
    True
    >>> carries_nothing({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    False
    >>> carries_nothing({"id": "c1", "choices": [], "usage": {"total_tokens": 3}})
    False
    """
    return _kind(chunk) == _BLANK


def weight(value: object) -> int:
    """An estimate of the memory a decoded JSON value takes, in bytes (CPython's object sizes,
    roughly; a string not all ASCII counted at four bytes a character).

    >>> weight({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}) < 1024
    True
    >>> weight({"pad": "x" * 100_000}) > 100_000
    True
    """
    size = 0
    stack = [value]
    while stack:  # not recursive: JSON may nest deeper than Python's recursion limit
        item = stack.pop()
        if isinstance(item, str):
            size += 49 + len(item) if item.isascii() else 76 + 4 * len(item)
        elif isinstance(item, dict):
            size += 120 + 24 * len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            size += 56 + 8 * len(item)
            stack.extend(item)
        elif item is not None and item is not True and item is not False:
            size += 32
    return size


class _Turn:
    """Awaiting it gives the event loop one turn: what ``asyncio.sleep(0)`` does, with no clock."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield  # a bare yield: the task is scheduled again at once, after what is ready


_TURN: Final = _Turn()


@dataclass(slots=True)
class OpenedStream:
    """A stream read up to its commit: the chunks so far, and the rest (None when it ended)."""

    held: list[StreamChunk]
    upstream: AsyncIterator[StreamChunk] | None


class StreamWork:
    """Open a provider's stream and read it up to its commit, within the bounds above."""

    __slots__ = ("max_bytes", "max_chunks")

    def __init__(
        self, *, max_chunks: int = MAX_CHUNKS_BEFORE_COMMIT, max_bytes: int = MAX_HELD_BYTES
    ) -> None:
        self.max_chunks = max_chunks
        self.max_bytes = max_bytes

    async def open(self, provider: ChatProvider, request: ChatRequest) -> OpenedStream:
        upstream = provider.stream(request)
        held: list[StreamChunk] = []
        blank: StreamChunk | None = None  # the first chunk that carried nothing
        count = size = 0
        try:
            async for chunk in upstream:
                kind = _kind(chunk)
                if kind == _COMMIT:
                    held.append(chunk)
                    return OpenedStream(held, upstream)
                count += 1
                if kind == _HOLD:
                    held.append(chunk)
                    if not len(held) % _WEIGH_EVERY:
                        size += weight(held[-_WEIGH_EVERY:])
                elif kind == _BLANK:
                    if blank is None:
                        blank = chunk
                else:
                    raise MalformedResponse(
                        "a stream chunk is not a chat.completion.chunk (its choices or delta "
                        "are not objects)",
                        deployment=provider.deployment.name,
                        status=200,
                    )
                if count > self.max_chunks or size > self.max_bytes:
                    break
                if not count & _TURN_MASK:
                    await _TURN
            else:
                return self._ended(provider, held, blank)
        except BaseException:
            held.clear()  # now, not when the traceback's frames are collected
            await close_quietly(upstream)
            raise
        # Over a bound: nothing held may outlive this frame, which the error's traceback keeps.
        held.clear()
        del chunk, blank
        await close_quietly(upstream)
        raise self._over_bound(provider, count, size)

    @staticmethod
    def _ended(
        provider: ChatProvider, held: list[StreamChunk], blank: StreamChunk | None
    ) -> OpenedStream:
        """The stream ended cleanly before any content: an empty answer is still an answer, but
        only if some chunk carried a choice (rule 10); a stream of nothing is malformed."""
        if not any(chunk.get("choices") for chunk in held):
            if blank is None or not blank.get("choices"):
                raise MalformedResponse(
                    "the stream ended without any choice",
                    deployment=provider.deployment.name,
                    status=200,
                )
            held.insert(0, blank)  # the client still gets a choice, if an empty one
        return OpenedStream(held, None)

    def _over_bound(self, provider: ChatProvider, count: int, size: int) -> MalformedResponse:
        if count > self.max_chunks:
            what = f"over {self.max_chunks} chunks before any content (the bound of chunks)"
        else:
            what = (
                f"about {size // 1024} KiB of chunks before any content, over the bound of "
                f"{self.max_bytes // 1024} KiB held"
            )
        return MalformedResponse(
            f"the stream sent {what}", deployment=provider.deployment.name, status=200
        )

    async def discard(self, value: OpenedStream) -> None:
        if value.upstream is not None:
            await close_quietly(value.upstream)

    def __repr__(self) -> str:
        return f"<StreamWork max_chunks={self.max_chunks} max_bytes={self.max_bytes}>"


STREAM = StreamWork()


async def close_quietly(upstream: AsyncIterator[StreamChunk]) -> None:
    """Close an upstream stream (and its connection); it may already have ended or failed."""
    close = getattr(upstream, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        logger.debug("closing an upstream stream failed", exc_info=True)


class CommittedStream:
    """A stream that has committed: the held chunks first, then the rest of the upstream.

    ``deployment`` answered (None for the default response, when ``degraded``); ``attempts`` are
    the request's attempt records, losers running on in the background included. The winner's
    record ends when the stream ends, and says the error class if it failed after the commit.
    Iterate it once; close it with ``aclose()`` (or ``async with``) when the client goes away,
    which closes the upstream connection.

    >>> import asyncio
    >>> async def read() -> list[str]:
    ...     default = [{"choices": [{"index": 0, "delta": {"content": "INTENT_FALLBACK"}}]}]
    ...     stream = CommittedStream(default, None, attempt=None, attempts=[], request_id="r1")
    ...     return [chunk["choices"][0]["delta"]["content"] async for chunk in stream]
    >>> asyncio.run(read())
    ['INTENT_FALLBACK']
    """

    __slots__ = (
        "_attempt",
        "_ended",
        "_gap",
        "_held",
        "_read",
        "_upstream",
        "attempts",
        "degraded",
        "deployment",
        "request_id",
    )

    def __init__(
        self,
        held: Iterable[StreamChunk],
        upstream: AsyncIterator[StreamChunk] | None,
        *,
        attempt: Attempt[Any] | None,
        attempts: list[AttemptRecord],
        request_id: str,
    ) -> None:
        """``attempt`` is the winner whose ``upstream`` this is; None for the default response."""
        self.deployment = attempt.target.name if attempt is not None else None
        self.degraded = attempt is None
        self.attempts = attempts
        self.request_id = request_id
        self._attempt = attempt
        self._held: deque[StreamChunk] = deque(held)
        self._upstream = upstream
        self._gap = attempt.target.timeout if attempt is not None else 0.0
        self._read = 0  # chunks read from the upstream: every _TURN_EVERY, the loop gets a turn
        self._ended = False
        if upstream is None:
            self._end()

    def __aiter__(self) -> CommittedStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._held:
            return self._held.popleft()
        upstream = self._upstream
        if upstream is None:
            raise StopAsyncIteration
        self._read += 1
        gap = Expiry(asyncio.get_running_loop().time() + self._gap)
        expired = False
        try:
            try:
                if not self._read & _TURN_MASK:
                    await _TURN  # cancelled here, it is as if cancelled in the read
                return await anext(upstream)
            finally:
                expired = gap.stop()
        except StopAsyncIteration:
            self._upstream = None
            self._end()
            raise
        except UpstreamError as error:
            await self._fail(error)
            raise
        except asyncio.CancelledError as cancelled:
            if not expired:  # the consumer was cancelled (the client left)
                await self.aclose()
                raise
            cancelled.__traceback__ = None  # it keeps the reader's frames: see Attempt.execute
            timeout = UpstreamTimeout(
                f"no chunk within the deployment's timeout of {self._gap:g}s",
                deployment=self.deployment or "",
            )
            await self._fail(timeout)
            raise timeout from None
        except BaseException:
            # A bug below us: the upstream is done for.
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop reading: close the upstream connection. Safe to call more than once."""
        upstream, self._upstream = self._upstream, None
        self._held.clear()
        if upstream is not None:
            await close_quietly(upstream)
        self._end()

    async def __aenter__(self) -> CommittedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _fail(self, error: UpstreamError) -> None:
        upstream, self._upstream = self._upstream, None
        self._ended = True
        if upstream is not None:
            await close_quietly(upstream)
        if self._attempt is not None:
            await self._attempt.fail_after_commit(error)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._attempt is not None:
            self._attempt.stream_ended()

    def __repr__(self) -> str:
        state = "ended" if self._upstream is None else "open"
        who = "degraded" if self.degraded else repr(self.deployment)
        return f"<CommittedStream {who} held={len(self._held)} {state}>"
