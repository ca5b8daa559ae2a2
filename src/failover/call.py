"""One request through the gateway's front door, whatever surface it came in by.

Every request, from the library or from any HTTP surface, is a :class:`Call` that
:meth:`failover.Gateway.begin` hands out, and nothing else runs one: the gateway looks its route
up, gives it its request id and its arrival time, and the call then runs it on the engine
(:meth:`Call.complete`, or :meth:`Call.open_stream` up to the commit, rule 8) and reports it,
exactly once, to the gateway's observability (request log, metrics, traces) and its
``on_finished`` callback. A surface (``server/surfaces/``) is a codec around it: its wire shape
parsed into a :class:`~failover.types.ChatRequest`, and the result rendered back.

The attempts are one list, the call's own: the engine fills it as attempts start and end (losers
complete theirs in it after the answer), and the report, the result and the errors all hand out
that same list.

>>> async def main(gateway):  # doctest: +SKIP
...     call = gateway.begin("intent", ChatRequest(messages=[{"role": "user", "content": "hi"}]))
...     result = await call.complete()
...     stream = await gateway.begin("intent", request, stream=True).open_stream()
...     async with stream:
...         async for chunk in stream: ...
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from failover.config import RouteConfig
from failover.engine import CommittedStream, Engine
from failover.observe import Observability
from failover.types import AttemptRecord, ChatRequest, ChatResult, StreamChunk, Usage

__all__ = ["Call", "CallStream", "Caller", "FinishedHook", "Front", "Surface"]

logger = logging.getLogger(__name__)


class Surface(enum.StrEnum):
    """The API a request came in by: records, metrics and traces name it."""

    CHAT = "chat"
    MESSAGES = "messages"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request over HTTP: the fingerprint of its key (``key_1a2b3c4d``; never the key)
    and the ``x-request-id`` it sent, kept beside failover's own id."""

    key_id: str | None = None
    request_id: str | None = None


FinishedHook = Callable[["Call", ChatResult | None, BaseException | None], None]
"""Told once per request, when its answer was given (a stream: when it ended): the call, and
exactly one of its result (a stream's: empty completion, the deployment, its usage) and what it
failed with (``CancelledError`` when the client left). It runs on the request's task: it must be
quick and must not block."""

_NOBODY = Caller()


class Front(Protocol):
    """What a call needs of its gateway (:class:`failover.Gateway` is one)."""

    engine: Engine
    observability: Observability
    on_finished: FinishedHook | None

    @property
    def started(self) -> bool: ...

    async def start(self) -> None: ...


class Call:
    """One request: its route, id and times; run it once with :meth:`complete` or
    :meth:`open_stream`. Built by :meth:`failover.Gateway.begin`."""

    __slots__ = (
        "_gateway",
        "_reported",
        "attempts",
        "caller",
        "request",
        "request_id",
        "route",
        "started",
        "started_wall",
        "stream",
        "surface",
    )

    def __init__(
        self,
        gateway: Front,
        route: RouteConfig,
        request: ChatRequest,
        request_id: str,
        *,
        stream: bool,
        surface: Surface,
        caller: Caller | None,
    ) -> None:
        self._gateway = gateway
        self.route = route
        self.request = request
        self.request_id = request_id
        self.stream = stream
        self.surface = surface
        self.caller = caller if caller is not None else _NOBODY
        self.attempts: list[AttemptRecord] = []
        self.started = asyncio.get_running_loop().time()
        self.started_wall = time.time()
        self._reported = False

    async def complete(self) -> ChatResult:
        """Answer the request: the winner's completion, or the route's default response.

        Raises what the engine raises when the route has no default to give
        (:class:`~failover.errors.AllTargetsFailed`, :class:`~failover.errors.NoTargetAvailable`,
        or the provider's own 400); cancelled, it cancels every attempt (rule 6).
        """
        gateway = self._gateway
        if not gateway.started:
            await gateway.start()
        try:
            result = await gateway.engine.chat(
                self.route, self.request, request_id=self.request_id, attempts=self.attempts
            )
        except BaseException as error:
            self.finish(None, error)
            raise
        self.finish(result, None)
        return result

    async def open_stream(self) -> CallStream:
        """Open the request as a stream; returns at its commit (rule 8), raises like
        :meth:`complete` before it. The request is reported when the stream ends."""
        gateway = self._gateway
        if not gateway.started:
            await gateway.start()
        try:
            opened = await gateway.engine.open_stream(
                self.route, self.request, request_id=self.request_id, attempts=self.attempts
            )
        except BaseException as error:
            self.finish(None, error)
            raise
        return CallStream(self, opened)

    def finish(self, result: ChatResult | None, error: BaseException | None) -> None:
        """Report the request, once (later calls do nothing); never raises."""
        if self._reported:
            return
        self._reported = True
        gateway = self._gateway
        caller = self.caller
        gateway.observability.request_finished(
            request_id=self.request_id,
            route=self.route.name,
            started_at_wall=self.started_wall,
            latency=asyncio.get_running_loop().time() - self.started,
            result=result,
            error=error,
            client_key_id=caller.key_id,
            client_request_id=caller.request_id,
            stream=self.stream,
            request=self.request,
            records=self.attempts,
        )
        hook = gateway.on_finished
        if hook is not None:
            try:
                hook(self, result, error)
            except Exception:
                # An embedder's bug must not break the answer already given.
                logger.exception("request %s: the on_finished hook failed", self.request_id)

    def __repr__(self) -> str:
        kind = "stream" if self.stream else "complete"
        return f"<Call {self.request_id} {self.surface} {self.route.name!r} {kind}>"


class CallStream:
    """A committed stream of a :class:`Call`: iterate it once, close it when done
    (``async with``). Its end reports the call: cleanly with its usage, with the error a
    failure after the commit raised, or as cancelled when it was closed early."""

    __slots__ = ("_call", "_stream", "_usage")

    def __init__(self, call: Call, stream: CommittedStream) -> None:
        self._call = call
        self._stream = stream
        self._usage: Any = None

    @property
    def deployment(self) -> str | None:
        """Who answered; None for the default response."""
        return self._stream.deployment

    @property
    def degraded(self) -> bool:
        return self._stream.degraded

    @property
    def attempts(self) -> list[AttemptRecord]:
        return self._call.attempts

    @property
    def call(self) -> Call:
        return self._call

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self

    async def __anext__(self) -> StreamChunk:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._ended()
            raise
        except BaseException as error:
            self._call.finish(None, error)
            raise
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        return chunk

    async def aclose(self) -> None:
        """Close the upstream; a stream closed before its end is reported as cancelled."""
        try:
            await self._stream.aclose()
        finally:
            self._call.finish(None, asyncio.CancelledError("the stream was closed before its end"))

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _ended(self) -> None:
        stream = self._stream
        self._call.finish(
            ChatResult(
                completion={},
                deployment=stream.deployment,
                degraded=stream.degraded,
                usage=Usage.from_openai(self._usage),
                attempts=self._call.attempts,
                request_id=self._call.request_id,
            ),
            None,
        )

    def __repr__(self) -> str:
        return f"<CallStream {self._call.request_id} from {self.deployment!r}>"
