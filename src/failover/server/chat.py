"""``POST /v1/chat/completions``: one chat request over HTTP, as JSON or as an SSE stream.

The body is read within ``max_body_bytes``, checked (:mod:`~failover.server.validate`), and run
on the route its ``model`` names by the gateway's engine. Answers carry ``x-request-id``
(failover's own id), ``x-failover-deployment`` (who answered), ``x-failover-attempts`` and, for
the route's default response, ``x-failover-degraded: true``.

Streams (SPEC rule 8): the engine returns at the commit, so the status line and headers go out
only then; whatever fails before it is answered as the same JSON error as a plain request. After
it, each chunk is sent as ``data: {chunk}`` and the stream ends with ``data: [DONE]``, or, when
the upstream fails, with ``data: {"error": {...}}`` (the official SDKs raise on it): never a
silent end.

A client that disconnects cancels its request (rule 6): a watcher waits on ``receive()`` beside
the engine and cancels the handler's task when it reports ``http.disconnect``; the engine then
cancels every attempt and closes their upstream connections. The watcher starts 50 to 100 ms into
the request, from one timer shared by all requests, so that fast answers pay for neither a task
nor a timer; a client that left is noticed within that. A client that stops reading its answer is
taken for gone the same way (:class:`~failover.server.connection.ConnectionLimits`'
``write_timeout``).

At shutdown, the server cancels what still runs when the drain is over (uvicorn does, at the end
of its graceful timeout; :meth:`ChatHandler.cut` does for a host that does not): each request so
cut is recorded at once, its attempts cancelled (rule 6), and it is answered 503
``shutting_down``, or, once its stream began, ends with that error event (rule 8: never a silent
cut). :meth:`ChatHandler.settle` waits for them, so that their records reach the request log
before it closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from failover.config import RouteConfig
from failover.engine import failure_status
from failover.errors import FailoverError
from failover.gateway import Gateway
from failover.server import answers
from failover.server.answers import CONNECTION_CLOSE, CONTENT_JSON, Header
from failover.server.context import RequestContext, RequestHook
from failover.server.exchange import BodyTooLarge, ClientGone, Exchange, Receive
from failover.server.validate import ChatCall, InvalidRequest, parse_chat
from failover.types import ChatRequest, ChatResult, Usage

__all__ = ["ChatHandler"]

logger = logging.getLogger(__name__)

_SSE: tuple[Header, ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies such as nginx must not hold the events back
)
_DEGRADED: Header = (b"x-failover-degraded", b"true")
_DONE = b"data: [DONE]\n\n"
_WATCH_AFTER = 0.05
"""The period of the disconnect watches: a client that leaves is noticed within two."""
_TOO_LARGE_MESSAGE = "the request body is larger than this gateway accepts ({} bytes)"
_SHUTTING_DOWN_MESSAGE = "the gateway is shutting down: send the request again"
# Without x-should-retry: false: failover did not finish trying, and another instance behind the
# same address (or this one, restarted) can answer a retry.
_SHUTTING_DOWN_HEADERS: tuple[Header, ...] = (CONNECTION_CLOSE, (b"retry-after", b"1"))
_SHUT_DOWN_EVENT = b"data: %b\n\n" % answers.error_body(
    "the gateway is shutting down: the stream was cut before its end",
    answers.type_for(503),
    "shutting_down",
)


class ChatHandler:
    """Answers chat requests over ``gateway``'s routes with its engine.

    Each request, once answered (a stream: once ended), is reported to the gateway's
    :class:`~failover.observe.Observability` (request log, metrics, traces) with its client's key
    fingerprint and its ``x-request-id``, then to ``hook`` if one is given. ``now`` and
    ``wall_clock`` time and date the request.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        max_body_bytes: int,
        hook: RequestHook | None = None,
        now: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = gateway.engine
        self._routes: Mapping[str, RouteConfig] = gateway.routes
        self._observability = gateway.observability
        self._request_ids = gateway.request_ids
        self._max_body = max_body_bytes
        self._hook = hook
        self._now = now
        self._wall_clock = wall_clock
        # Header values of every deployment name, encoded once.
        self._names = {
            name: (b"x-failover-deployment", name.encode()) for name in gateway.config.deployments
        }
        self._watches = _Watches()
        self._running: set[asyncio.Task[Any]] = set()  # the tasks of requests past their parse
        self._too_large = answers.error(
            413,
            _TOO_LARGE_MESSAGE.format(max_body_bytes),
            "request_too_large",
            headers=(CONNECTION_CLOSE,),  # the rest of the body is not read
        )

    async def __call__(self, exchange: Exchange, client_key_id: str | None, admin: bool) -> None:
        try:
            body = await exchange.read_body(self._max_body)
        except BodyTooLarge:
            await exchange.error(self._too_large)
            return
        except ClientGone:
            return
        try:
            call = parse_chat(body)
        except InvalidRequest as invalid:
            await exchange.error(
                answers.error(400, invalid.message, invalid.code, param=invalid.param)
            )
            return
        route = self._routes.get(call.model)
        if route is None:
            await exchange.error(_unknown_model(call.model))
            return
        context = RequestContext(
            request_id=self._request_ids(),
            client_request_id=exchange.client_request_id,
            client_key_id=client_key_id,
            client=exchange.client_address,
            path="/v1/chat/completions",
            started=self._now(),
            started_wall=self._wall_clock(),
            admin=admin,
            route=route.name,
            stream=call.stream,
        )
        task = asyncio.current_task()
        assert task is not None
        running = self._running
        running.add(task)
        watch = self._watches.watch(exchange.receive, task)
        try:
            if call.stream:
                await self._stream(exchange, context, route, call, watch)
            else:
                await self._complete(exchange, context, route, call, watch)
        except asyncio.CancelledError:
            if not task.cancelling():
                raise  # not a cancellation of this request: an error below
            # This request was cancelled: by its watch (the client left) or by the server (the
            # drain is over). Every attempt is cancelled by now (rule 6); it is recorded first.
            watch.stop()
            reason = "client disconnected" if watch.fired else "the gateway is shutting down"
            self._finished(context, call.request, None, asyncio.CancelledError(reason))
            if task.uncancel() > 0:
                raise  # cancelled twice: the second is not this handler's to end
            if watch.fired:
                return  # the client left: nobody to answer
            if not exchange.started:
                request_id = (b"x-request-id", context.request_id.encode())
                headers = (*_SHUTTING_DOWN_HEADERS, request_id)
                answer = answers.error(
                    503, _SHUTTING_DOWN_MESSAGE, "shutting_down", headers=headers
                )
                await exchange.error(answer)
            elif call.stream:
                tail = {"type": "http.response.body", "body": _SHUT_DOWN_EVENT, "more_body": False}
                await exchange.send(tail)
        finally:
            watch.stop()
            running.discard(task)

    def cut(self) -> None:
        """Cancel every request still running, as a server does when its drain is over (each is
        answered 503, or its stream ended with an error event, and recorded)."""
        for task in self._running:
            if not task.cancelling():  # the server's own cut already under way: not twice
                task.cancel()

    async def settle(self, seconds: float) -> None:
        """Wait (at most ``seconds``) for the requests still running to end, cutting them first;
        their records are made by then, before the request log closes."""
        self.cut()
        if self._running:
            await asyncio.wait(set(self._running), timeout=seconds)

    async def _complete(
        self,
        exchange: Exchange,
        context: RequestContext,
        route: RouteConfig,
        call: ChatCall,
        watch: _DisconnectWatch,
    ) -> None:
        request_id = context.request_id
        try:
            result = await self._engine.chat(route, call.request, request_id=request_id)
        except Exception as exc:
            watch.stop()
            await self._failed(exchange, context, call.request, exc)
            return
        watch.stop()
        body = orjson.dumps(result.completion)
        headers = [
            CONTENT_JSON,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", request_id.encode()),
            (b"x-failover-attempts", b"%d" % len(result.attempts)),
            self._who(result.deployment),
        ]
        await exchange.answer(200, headers, body)
        self._finished(context, call.request, result, None)

    async def _stream(
        self,
        exchange: Exchange,
        context: RequestContext,
        route: RouteConfig,
        call: ChatCall,
        watch: _DisconnectWatch,
    ) -> None:
        request_id = context.request_id
        try:
            stream = await self._engine.open_stream(route, call.request, request_id=request_id)
        except Exception as exc:
            watch.stop()
            await self._failed(exchange, context, call.request, exc)
            return
        async with stream:
            # The commit: now the status line and the x-failover-* headers go out (rule 8).
            headers = [
                *_SSE,
                (b"x-request-id", request_id.encode()),
                (b"x-failover-attempts", b"%d" % len(stream.attempts)),
                self._who(stream.deployment),
            ]
            send = exchange.send
            exchange.started = True
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            usage: Any = None
            error: BaseException | None = None
            try:
                async for chunk in stream:
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b"data: %b\n\n" % orjson.dumps(chunk),
                            "more_body": True,
                        }
                    )
            except FailoverError as exc:
                error = exc
                tail = _error_event(exc)
            except Exception as exc:
                logger.exception("request %s: unexpected error in a stream", request_id)
                error = exc
                tail = _error_event(exc)
            else:
                tail = _DONE
        watch.stop()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        if error is not None:
            self._finished(context, call.request, None, error)
            return
        result = ChatResult(
            completion={},
            deployment=stream.deployment,
            degraded=stream.degraded,
            usage=Usage.from_openai(usage),
            attempts=stream.attempts,
            request_id=request_id,
        )
        self._finished(context, call.request, result, None)

    async def _failed(
        self, exchange: Exchange, context: RequestContext, request: ChatRequest, exc: Exception
    ) -> None:
        if not isinstance(exc, FailoverError):
            # A bug: the engine logged it when it could; this names the request it broke.
            logger.error("request %s: unexpected error", context.request_id, exc_info=exc)
        request_id = (b"x-request-id", context.request_id.encode())
        await exchange.error(answers.engine_error(exc, extra=(request_id,)))
        self._finished(context, request, None, exc)

    def _who(self, deployment: str | None) -> Header:
        if deployment is None:
            return _DEGRADED
        return self._names.get(deployment) or (b"x-failover-deployment", deployment.encode())

    def _finished(
        self,
        context: RequestContext,
        request: ChatRequest,
        result: ChatResult | None,
        error: BaseException | None,
    ) -> None:
        # Never raises (its contract): the answer is already given.
        self._observability.request_finished(
            request_id=context.request_id,
            route=context.route or "",
            started_at_wall=context.started_wall,
            latency=self._now() - context.started,
            result=result,
            error=error,
            client_key_id=context.client_key_id,
            client_request_id=context.client_request_id,
            stream=context.stream,
            request=request,
        )
        if self._hook is None:
            return
        try:
            self._hook(context, result, error)
        except Exception:
            # An embedder's bug must not break the answer already given.
            logger.exception("request %s: the request hook failed", context.request_id)


class _Watches:
    """Watches for clients leaving, one timer for all the requests of a handler.

    A request registers its :class:`_DisconnectWatch` on arrival; every :data:`_WATCH_AFTER`
    seconds (one timer, only while requests are registered) the watches registered before the
    previous tick start a task each on ``receive()``. A request answered sooner costs a dict
    insert and a delete: no timer and no task of its own, and a client that left is still seen
    within two ticks.
    """

    __slots__ = ("_handle", "_older", "_younger")

    def __init__(self) -> None:
        self._younger: dict[_DisconnectWatch, None] = {}
        self._older: dict[_DisconnectWatch, None] = {}
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, receive: Receive, task: asyncio.Task[Any]) -> _DisconnectWatch:
        watch = _DisconnectWatch(receive, task, self)
        self._younger[watch] = None
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(_WATCH_AFTER, self._tick)
        return watch

    def forget(self, watch: _DisconnectWatch) -> None:
        if watch in self._younger:
            del self._younger[watch]
        else:
            self._older.pop(watch, None)

    def _tick(self) -> None:
        due, self._older, self._younger = self._older, self._younger, {}
        for watch in due:
            watch.start()
        self._handle = (
            asyncio.get_running_loop().call_later(_WATCH_AFTER, self._tick) if self._older else None
        )


class _DisconnectWatch:
    """Cancels ``task`` when ``receive()`` says the client disconnected, until stopped.

    Its task on ``receive()`` is started by :class:`_Watches` once the request has run between
    one and two :data:`_WATCH_AFTER` periods: most answers from a fast upstream come sooner, and a
    client that left earlier is still seen at once then (``receive()`` reports it when asked).
    """

    __slots__ = ("_receive", "_task", "_watcher", "_watches", "fired")

    def __init__(self, receive: Receive, task: asyncio.Task[Any], watches: _Watches) -> None:
        self.fired = False
        self._task = task
        self._receive = receive
        self._watches: _Watches | None = watches
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watches = None
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass  # more body after the end: nothing to read, go on waiting
        self._watcher = None
        self.fired = True
        self._task.cancel()

    def stop(self) -> None:
        """Stop watching (before the last bytes of the answer go out, and at the end)."""
        watches, self._watches = self._watches, None
        if watches is not None:
            watches.forget(self)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()


def _unknown_model(model: str) -> answers.ErrorAnswer:
    shown = model if len(model) <= 200 else model[:200] + "..."
    return answers.error(
        404,
        f"the model {shown!r} does not exist: name a route or a deployment (GET /v1/models)",
        "model_not_found",
        param="model",
    )


def _error_event(exc: BaseException) -> bytes:
    """The SSE event that ends a stream which failed after its commit."""
    status, code, _ = failure_status(exc)
    if status == 500:
        message = "internal error"
    else:
        message = f"the stream failed after it started: {getattr(exc, 'message', '') or code}"
    body = answers.error_body(message, answers.type_for(status), code)
    return b"data: %b\n\n" % body
