"""One HTTP request on any surface: the body read, the codec's request run through the gateway's
front door, and the answer written back, as JSON or as a stream.

:class:`SurfaceHandler` is the same for every API; what differs between them is their
:class:`~failover.server.surfaces.Codec`. A request's life here:

1. its body is read within ``max_body_bytes`` (413) and parsed by the codec (400, field named);
2. :meth:`failover.Gateway.begin` looks its route up (404) and gives it its id and arrival time;
3. the :class:`~failover.call.Call` runs it: :meth:`~failover.call.Call.complete`, or
   :meth:`~failover.call.Call.open_stream`, which returns at the commit (rule 8), so the status
   line and the ``x-failover-*`` headers go out only then; whatever fails before it is answered
   as the same error as a plain request, in the codec's shape (:mod:`~failover.server.status`);
4. after the commit each chunk goes out as the codec's encoder writes it, and the stream ends
   with its end, or with an error event when the upstream failed (never a silent end).

Answers carry ``x-request-id`` (failover's own id), ``x-failover-deployment`` (who answered),
``x-failover-attempts`` and, for the route's default response, ``x-failover-degraded: true``.
The call reports itself; this module never touches the engine or the observability.

A client that disconnects, or stops reading (``write_timeout`` of
:class:`~failover.server.connection.ConnectionLimits`), cancels its request (rule 6,
:mod:`~failover.server.watch`). At shutdown the server cancels what still runs when the drain is
over (uvicorn does, at the end of its graceful timeout; :meth:`SurfaceHandler.cut` does for a
host that does not): each request so cut is recorded at once, its attempts cancelled, and it is
answered 503 ``shutting_down``, or, once its stream began, ends with that error event.
:meth:`SurfaceHandler.settle` waits for them, so that their records reach the request log
before it closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from failover.call import Call, Caller
from failover.errors import FailoverError, InvalidRequest, UnknownModel
from failover.gateway import Gateway
from failover.server.answers import CONNECTION_CLOSE, CONTENT_JSON, Header
from failover.server.exchange import BodyTooLarge, ClientGone, Exchange
from failover.server.status import Problem, problem_for, stream_problem
from failover.server.surfaces import Codec, StreamEncoder
from failover.server.watch import DisconnectWatch, Watches

__all__ = ["SurfaceHandler"]

logger = logging.getLogger(__name__)

_STREAM_HEADERS: tuple[Header, ...] = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies such as nginx must not hold the events back
)
_DEGRADED: Header = (b"x-failover-degraded", b"true")
_SHUTTING_DOWN = Problem(
    503,
    "the gateway is shutting down: send the request again",
    "shutting_down",
    # Without x-should-retry: false: failover did not finish trying, and another instance behind
    # the same address (or this one, restarted) can answer a retry.
    headers=(CONNECTION_CLOSE, (b"retry-after", b"1")),
)
_STREAM_CUT = Problem(
    503, "the gateway is shutting down: the stream was cut before its end", "shutting_down"
)


class SurfaceHandler:
    """Answers one surface's requests (its ``codec``) through ``gateway``'s front door."""

    def __init__(self, gateway: Gateway, codec: Codec, *, max_body_bytes: int) -> None:
        self._gateway = gateway
        self._codec = codec
        self._max_body = max_body_bytes
        self._stream_headers = (codec.content_type, *_STREAM_HEADERS)
        # Header values of every deployment name, encoded once.
        self._names = {
            name: (b"x-failover-deployment", name.encode()) for name in gateway.config.deployments
        }
        self._watches = Watches()
        self._running: set[asyncio.Task[Any]] = set()  # the tasks of requests being served
        self._ending: set[asyncio.Task[Any]] = set()  # cut at shutdown, saying their last words
        self._too_large = codec.error(
            Problem(
                413,
                f"the request body is larger than this gateway accepts ({max_body_bytes} bytes)",
                "request_too_large",
                headers=(CONNECTION_CLOSE,),  # the rest of the body is not read
            )
        )

    async def __call__(self, exchange: Exchange, client_key_id: str | None, admin: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            call = await self._begin(exchange, client_key_id, task)
            if call is not None:
                await self._run(exchange, call, task)
        finally:
            self._running.discard(task)
            self._ending.discard(task)

    def cut(self) -> None:
        """Cancel every request still running, as a server does when its drain is over (each is
        answered 503, or its stream ended with an error event, and recorded). Those already
        saying their last words after a first cut are left to finish them."""
        for task in self._running:
            if not task.cancelling():  # the server's own cut already under way: not twice
                task.cancel()

    async def settle(self, seconds: float) -> None:
        """Wait (at most ``seconds``) for the requests still running to end, cutting them first;
        their records are made by then, before the request log closes."""
        self.cut()
        waiting = self._running | self._ending
        if waiting:
            await asyncio.wait(waiting, timeout=seconds)

    async def _begin(
        self, exchange: Exchange, client_key_id: str | None, task: asyncio.Task[Any]
    ) -> Call | None:
        """The request read and begun; None when it is answered already (or nobody is left)."""
        codec = self._codec
        try:
            body = await exchange.read_body(self._max_body)
        except BodyTooLarge:
            await exchange.error(self._too_large)
            return None
        except ClientGone:
            return None
        except asyncio.CancelledError:
            # Cut by the server while the body was still coming: nothing was begun to record.
            if not task.cancelling() or task.uncancel() > 0:
                raise
            await self._last_words(exchange, task, None, None)
            return None
        try:
            parsed = codec.parse(body)
            return self._gateway.begin(
                parsed.model,
                parsed.request,
                stream=parsed.stream,
                surface=codec.surface,
                caller=Caller(client_key_id, exchange.client_request_id),
            )
        except InvalidRequest as invalid:
            problem = Problem(400, invalid.message, invalid.code, param=invalid.param)
            await exchange.error(codec.error(problem))
        except UnknownModel as unknown:
            await exchange.error(codec.error(_unknown_model(unknown.model)))
        return None

    async def _run(self, exchange: Exchange, call: Call, task: asyncio.Task[Any]) -> None:
        watch = self._watches.watch(exchange.receive, task)
        encoder = self._codec.encoder(call) if call.stream else None
        try:
            if encoder is not None:
                await self._stream(exchange, call, encoder, watch)
            else:
                await self._complete(exchange, call, watch)
        except asyncio.CancelledError:
            if not task.cancelling():
                raise  # not a cancellation of this request: an error below
            # This request was cancelled: by its watch (the client left) or by the server (the
            # drain is over). Every attempt is cancelled by now (rule 6); it is recorded first.
            watch.stop()
            reason = "client disconnected" if watch.fired else "the gateway is shutting down"
            call.finish(None, asyncio.CancelledError(reason))
            if task.uncancel() > 0:
                raise  # cancelled twice: the second is not this handler's to end
            if not watch.fired:  # else the client left: nobody to answer
                await self._last_words(exchange, task, call, encoder)
        finally:
            watch.stop()

    async def _complete(self, exchange: Exchange, call: Call, watch: DisconnectWatch) -> None:
        try:
            result = await call.complete()
        except Exception as exc:
            watch.stop()
            await self._failed(exchange, call, exc)
            return
        watch.stop()
        body = self._codec.completion(result)
        headers = [
            CONTENT_JSON,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", call.request_id.encode()),
            (b"x-failover-attempts", b"%d" % len(call.attempts)),
            self._who(result.deployment),
        ]
        await exchange.answer(200, headers, body)

    async def _stream(
        self, exchange: Exchange, call: Call, encoder: StreamEncoder, watch: DisconnectWatch
    ) -> None:
        try:
            stream = await call.open_stream()
        except Exception as exc:
            watch.stop()
            await self._failed(exchange, call, exc)
            return
        async with stream:
            # The commit: now the status line and the x-failover-* headers go out (rule 8).
            headers = [
                *self._stream_headers,
                (b"x-request-id", call.request_id.encode()),
                (b"x-failover-attempts", b"%d" % len(call.attempts)),
                self._who(stream.deployment),
            ]
            send = exchange.send
            exchange.started = True
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            first = encoder.start(stream)
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            try:
                async for chunk in stream:
                    data = encoder.chunk(chunk)
                    if data:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
            except FailoverError as exc:
                tail = encoder.failed(stream_problem(exc))
            except Exception as exc:
                logger.exception("request %s: unexpected error in a stream", call.request_id)
                tail = encoder.failed(stream_problem(exc))
            else:
                tail = encoder.done()
        watch.stop()
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _failed(self, exchange: Exchange, call: Call, exc: Exception) -> None:
        if not isinstance(exc, FailoverError):
            # A bug: the engine logged it when it could; this names the request it broke.
            logger.error("request %s: unexpected error", call.request_id, exc_info=exc)
        request_id = (b"x-request-id", call.request_id.encode())
        await exchange.error(self._codec.error(problem_for(exc, extra=(request_id,))))

    async def _last_words(
        self,
        exchange: Exchange,
        task: asyncio.Task[Any],
        call: Call | None,
        encoder: StreamEncoder | None,
    ) -> None:
        """Answer a request the server cut at shutdown: 503, or the error event of its stream.
        From here on, the lifespan's :meth:`cut` leaves it to finish (a slow reader too)."""
        self._running.discard(task)
        self._ending.add(task)
        if not exchange.started:
            headers = _SHUTTING_DOWN.headers
            if call is not None:
                headers = (*headers, (b"x-request-id", call.request_id.encode()))
            await exchange.error(self._codec.error(_SHUTTING_DOWN._replace(headers=headers)))
        elif encoder is not None:
            tail = encoder.failed(_STREAM_CUT)
            await exchange.send({"type": "http.response.body", "body": tail, "more_body": False})

    def _who(self, deployment: str | None) -> Header:
        if deployment is None:
            return _DEGRADED
        return self._names.get(deployment) or (b"x-failover-deployment", deployment.encode())

    @property
    def path(self) -> str:
        return self._codec.path

    @property
    def codec(self) -> Codec:
        return self._codec

    def __repr__(self) -> str:
        return f"<SurfaceHandler {self._codec.path} running={len(self._running)}>"


def _unknown_model(model: str) -> Problem:
    shown = model if len(model) <= 200 else model[:200] + "..."
    return Problem(
        404,
        f"the model {shown!r} does not exist: name a route or a deployment (GET /v1/models)",
        "model_not_found",
        param="model",
    )
