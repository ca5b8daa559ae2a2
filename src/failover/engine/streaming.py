"""Streams (SPEC rule 8): failover until the commit, then a stream that never ends silently.

A stream *commits* at its first chunk with a non-empty ``delta.content``, ``delta.tool_calls`` or
``delta.refusal``. Opening a stream up to that chunk is an attempt's :class:`Work`
(:data:`STREAM`): until then failover and hedging work as for any request, and the chunks before
it (role, empty deltas) are held. The engine then hands out a :class:`CommittedStream`, which
replays the held chunks and goes on reading the winner's upstream. After the commit only the
deployment's ``timeout`` applies, as the longest gap between two chunks; a failure raises an
:class:`~failover.errors.UpstreamError` from the iterator (the server sends it as an error event),
never a clean end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from failover.engine.attempt import Attempt
from failover.engine.expiry import Expiry
from failover.errors import MalformedResponse, UpstreamError, UpstreamTimeout
from failover.providers.base import ChatProvider
from failover.types import AttemptRecord, ChatRequest, StreamChunk

__all__ = ["STREAM", "CommittedStream", "OpenedStream", "StreamWork", "commits"]

logger = logging.getLogger(__name__)


def commits(chunk: StreamChunk) -> bool:
    """Whether ``chunk`` carries content, tool calls or a refusal (the stream commits on it).

    >>> commits({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    False
    >>> commits({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    True
    """
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
            return True
    return False


@dataclass(slots=True)
class OpenedStream:
    """A stream read up to its commit: the chunks so far, and the rest (None when it ended)."""

    held: list[StreamChunk]
    upstream: AsyncIterator[StreamChunk] | None


class StreamWork:
    """Open a provider's stream and read it up to its commit."""

    __slots__ = ()

    async def open(self, provider: ChatProvider, request: ChatRequest) -> OpenedStream:
        upstream = provider.stream(request)
        held: list[StreamChunk] = []
        try:
            async for chunk in upstream:
                held.append(chunk)
                if commits(chunk):
                    return OpenedStream(held, upstream)
        except BaseException:
            await close_quietly(upstream)
            raise
        # It ended cleanly before any content: an empty answer is still an answer, but only
        # if some chunk carried a choice (rule 10); a stream of nothing is malformed.
        if not any(chunk.get("choices") for chunk in held):
            raise MalformedResponse(
                "the stream ended without any choice",
                deployment=provider.deployment.name,
                status=200,
            )
        return OpenedStream(held, None)

    async def discard(self, value: OpenedStream) -> None:
        if value.upstream is not None:
            await close_quietly(value.upstream)


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
        gap = Expiry(asyncio.get_running_loop().time() + self._gap)
        expired = False
        try:
            try:
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
        except asyncio.CancelledError:
            if not expired:  # the consumer was cancelled (the client left)
                await self.aclose()
                raise
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
