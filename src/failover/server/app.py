"""The gateway's ASGI application: no framework, one dict lookup from path to endpoint.

:class:`GatewayApp` serves docs/semantics.md in front of a :class:`~failover.gateway.Gateway`:

=========================  ======  ====  =====================================================
path                       method  auth  answer
=========================  ======  ====  =====================================================
/v1/chat/completions       POST    yes   :mod:`failover.server.surfaces.chat` (JSON or SSE)
/v1/models                 GET     yes   the routes and deployments, OpenAI's list shape
/v1/status                 GET     yes   each deployment's health row
/v1/requests/{id}          GET     yes   one request's record (the admin: any; a client: its own)
/metrics                   GET     yes   Prometheus text
/health                    GET     no    liveness: 200 while the process serves
/ready                     GET     no    200 once started, 503 while starting or draining
/openapi.json              GET     no    the OpenAPI 3.1 document of this API
=========================  ======  ====  =====================================================

Each request is admitted in one pass over its headers: the client's key (:mod:`.auth`; a missing
or wrong one is 401 where auth applies), then its inbound rate limit per client and path
(:mod:`.limits`, 429 with Retry-After). The default limit of ``server.rate_limits`` applies to
the API paths; ``/health``, ``/ready``, ``/openapi.json`` and ``/metrics`` are limited only when
``paths`` names them (a load balancer's probes and a scraper must never be refused by a default
meant for clients).
An unknown path is 404, a wrong method 405. An unexpected exception is logged with its traceback
and answered 500 without internals.

Lifecycle: the ASGI lifespan's startup starts the gateway (its request log writer and alert
sinks) and runs the ``on_startup`` callables (the start-up check), then ``/ready`` turns 200.
:meth:`GatewayApp.begin_drain` (on SIGTERM) turns it 503 again; the lifespan's shutdown then
waits for the chat requests the drain cut (each answered 503 or ending its stream with an error
event, and recorded), and closes the gateway (background losers, the request log, upstream
connections) when the app owns it. Records and metrics come from the gateway's
:class:`~failover.observe.Observability`, which the chat handler tells of every answered request.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from failover.clock import Clock, LoopClock
from failover.errors import ClientRateLimited, StoreError
from failover.gateway import Gateway
from failover.server import answers
from failover.server.answers import CONTENT_JSON, ErrorAnswer, Header
from failover.server.auth import Authenticator
from failover.server.exchange import Exchange, Receive, Scope, Send
from failover.server.info import is_request_id, models_body, status_body
from failover.server.limits import LocalLimiter, Rate, rates_for
from failover.server.openapi import openapi_document
from failover.server.shared_limits import SharedLimiter
from failover.server.status import Problem, problem_for
from failover.server.surface import SurfaceHandler
from failover.server.surfaces import surface_codecs
from failover.state import RedisHealthStore

__all__ = ["GatewayApp", "Phase"]

logger = logging.getLogger("failover.server")

Handler = Callable[[Exchange, str | None, bool], Awaitable[None]]


class Phase(enum.StrEnum):
    """Where the app is in its life; ``/ready`` answers 200 only when ``READY``."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One path: a handler per method, whether it needs a key, its inbound limit, and its
    answers to a wrong method, a missing key and a client over its limit, in the error shape
    of its API (a surface's own; OpenAI's for the others)."""

    path: str
    handlers: dict[str, Handler]
    auth: bool
    rate: Rate | None
    render: Callable[[Problem], ErrorAnswer]
    not_allowed: ErrorAnswer
    unauthorized: ErrorAnswer


_NOT_FOUND = answers.error(404, "no such path", "not_found")
_UNAUTHORIZED = Problem(
    401,
    "missing or invalid API key: send it as 'Authorization: Bearer KEY' (or 'x-api-key: KEY')",
    "invalid_api_key",
    headers=((b"www-authenticate", b"Bearer"),),
)
_INTERNAL = answers.error(500, "internal error", "internal_error")
_NO_RECORD = answers.error(404, "no such request (or not yours)", "request_not_found")
_NO_LOG = answers.error(
    503,
    "the request log cannot be read now",
    "store_unavailable",
    headers=((b"retry-after", b"5"),),
)
_OPEN = frozenset({"/health", "/ready", "/openapi.json"})
"""Paths served without a key."""
_OPERATIONAL = _OPEN | {"/metrics"}
"""Paths the default inbound limit does not apply to (only their own in ``paths``)."""
RECORDS = "/v1/requests/"
"""The prefix of ``GET /v1/requests/{id}``."""
_SETTLE_SECONDS = 3.0
"""How long the shutdown waits for cut requests to end: they are recorded at once, and this
bounds only their last event to a client that reads slowly (``failover serve --workers`` kills a
worker 10 s after the drain, which the request log's own flush also needs)."""


class GatewayApp:
    """The ASGI 3 application of the HTTP gateway.

    Each surface (:mod:`failover.server.surfaces`) is served by one
    :class:`~failover.server.surface.SurfaceHandler` through the gateway's front door.
    ``on_startup`` runs at the lifespan's startup, before ``/ready`` says 200 (e.g. the start-up
    probe of every deployment); ``owns_gateway``: close the gateway at the lifespan's shutdown.
    ``clock`` times the inbound limits; ``wall_clock`` dates the model list.

    >>> app = GatewayApp(Gateway.from_dict(config))  # doctest: +SKIP
    >>> uvicorn.run(app, loop="uvloop", http="httptools", access_log=False)  # doctest: +SKIP
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
        owns_gateway: bool = True,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        config = gateway.config
        server = config.server
        self.gateway = gateway
        self.phase = Phase.STARTING
        self._on_startup = tuple(on_startup)
        self._owns_gateway = owns_gateway
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._auth = Authenticator(server.api_keys, server.admin_key)
        self._local = LocalLimiter()
        self._shared: SharedLimiter | None = None
        self._surfaces = [
            SurfaceHandler(gateway, codec, max_body_bytes=server.max_body_bytes)
            for codec in surface_codecs()
        ]
        renders: dict[str, Callable[[Problem], ErrorAnswer]] = {
            surface.path: surface.codec.error for surface in self._surfaces
        }
        self._models = models_body(config, int(wall_clock()))
        self._openapi = orjson.dumps(openapi_document(config))
        handlers: dict[str, dict[str, Handler]] = {
            **{surface.path: {"POST": surface} for surface in self._surfaces},
            "/v1/models": self._get(self._list_models),
            "/v1/status": self._get(self._read_status),
            "/health": self._get(self._health),
            "/ready": self._get(self._ready),
            "/openapi.json": self._get(self._document),
            "/metrics": self._get(self._metrics),
            RECORDS: self._get(self._read_record),
        }
        rates = rates_for(server.rate_limits, list(handlers))
        own = server.rate_limits.paths if server.rate_limits is not None else {}
        self._endpoints = {
            path: _endpoint(
                path,
                methods,
                auth=path not in _OPEN,
                rate=rates[path] if path not in _OPERATIONAL or path in own else None,
                render=renders.get(path, answers.openai_error),
            )
            for path, methods in handlers.items()
        }
        if config.state.backend == "redis" and any(e.rate for e in self._endpoints.values()):
            store = getattr(gateway.health, "store", None)
            self._shared = SharedLimiter(
                store.client if isinstance(store, RedisHealthStore) else config.state.url,
                key_prefix=config.state.key_prefix,
                now=self._clock.now,
                local=self._local,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websocket: not served (uvicorn runs with ws="none").

    def begin_drain(self) -> None:
        """Turn ``/ready`` 503: the process is about to stop (in-flight requests still finish)."""
        if self.phase is not Phase.DRAINING:
            self.phase = Phase.DRAINING
            logger.info("draining: /ready answers 503, in-flight requests finish")

    async def startup(self) -> None:
        """Start the gateway (its request log and alert sinks), run the start-up callables,
        then turn ``/ready`` 200 (the lifespan's startup)."""
        await self.gateway.start()
        for call in self._on_startup:
            await call()
        if self.phase is Phase.STARTING:
            self.phase = Phase.READY

    async def aclose(self) -> None:
        """Drain, then close the shared limiter and (when owned) the gateway.

        Chat requests still running are cut first (the server cut them already when its drain
        ran out: uvicorn cancels them and goes on to the lifespan's shutdown at once), and waited
        for, up to a few seconds: each records itself, and its record must reach the request log
        before the gateway closes it.
        """
        self.begin_drain()
        try:
            await asyncio.gather(*(s.settle(_SETTLE_SECONDS) for s in self._surfaces))
            if self._shared is not None:
                await self._shared.aclose()
        finally:
            if self._owns_gateway:
                await self.gateway.aclose()

    # -- dispatch ------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = Exchange(scope, receive, send)
        try:
            path: str = scope["path"]
            endpoint = self._endpoints.get(path)
            if endpoint is None:
                if not path.startswith(RECORDS) or path == RECORDS:
                    await exchange.error(_NOT_FOUND)
                    return
                endpoint = self._endpoints[RECORDS]  # /v1/requests/{id}
            handler = endpoint.handlers.get(scope["method"])
            if handler is None:
                await exchange.error(endpoint.not_allowed)
                return
            if not endpoint.auth and endpoint.rate is None:
                await handler(exchange, None, False)  # the probes: nothing to read
                return
            exchange.read_headers()
            identity = self._auth.identify(exchange.key) if exchange.key is not None else None
            if identity is None and endpoint.auth and self._auth.required:
                await exchange.error(endpoint.unauthorized)
                return
            key_id = identity.key_id if identity is not None else None
            if endpoint.rate is not None:
                wait = await self._limit(key_id or exchange.client_address, endpoint)
                if wait is not None:
                    await exchange.error(_over_limit(wait, endpoint.render))
                    return
            await handler(exchange, key_id, identity is not None and identity.admin)
        except Exception:
            logger.exception("%s %s: unexpected error", scope.get("method"), scope.get("path"))
            if not exchange.started:
                await exchange.error(_INTERNAL)

    async def _limit(self, client: str, endpoint: _Endpoint) -> float | None:
        rate = endpoint.rate
        assert rate is not None
        if self._shared is not None:
            return await self._shared.check(client, endpoint.path, rate)
        return self._local.check(f"{client}|{endpoint.path}", rate, self._clock.now())

    @staticmethod
    def _get(handler: Handler) -> dict[str, Handler]:
        return {"GET": handler, "HEAD": handler}

    # -- the read-only endpoints -----------------------------------------------------------

    async def _list_models(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        await exchange.answer(200, _json_headers(self._models), self._models)

    async def _read_status(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        body = await status_body(self.gateway)
        await exchange.answer(200, _json_headers(body), body)

    async def _health(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        await exchange.answer(200, _json_headers(_ALIVE), _ALIVE)

    async def _ready(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        body = _PHASES[self.phase]
        status = 200 if self.phase is Phase.READY else 503
        await exchange.answer(status, _json_headers(body), body)

    async def _document(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        await exchange.answer(200, _json_headers(self._openapi), self._openapi)

    async def _metrics(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        gateway = self.gateway
        body = gateway.metrics_text()
        headers = [
            (b"content-type", gateway.metrics_content_type.encode()),
            (b"content-length", b"%d" % len(body)),
        ]
        await exchange.answer(200, headers, body)

    async def _read_record(self, exchange: Exchange, key_id: str | None, admin: bool) -> None:
        request_id = exchange.scope["path"][len(RECORDS) :]
        if not is_request_id(request_id):
            await exchange.error(_NO_RECORD)
            return
        try:
            record = await self.gateway.record(request_id)
        except StoreError:
            await exchange.error(_NO_LOG)
            return
        # Without auth everyone is the admin; with it a client reads only its own records, and
        # a record it may not read looks like none at all.
        if record is None or (
            self._auth.required and not admin and record.get("client_key_id") != key_id
        ):
            await exchange.error(_NO_RECORD)
            return
        body = orjson.dumps(record)
        await exchange.answer(200, _json_headers(body), body)

    # -- lifespan --------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": _safe(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.aclose()
                except Exception as exc:
                    logger.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": _safe(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    def __repr__(self) -> str:
        return (
            f"<GatewayApp {self.phase.value} routes={len(self.gateway.routes)} "
            f"auth={'on' if self._auth.required else 'off'}>"
        )


_ALIVE = b'{"status":"ok"}'
_PHASES = {phase: orjson.dumps({"status": phase.value}) for phase in Phase}


def _json_headers(body: bytes) -> list[Header]:
    return [CONTENT_JSON, (b"content-length", b"%d" % len(body))]


def _endpoint(
    path: str,
    handlers: dict[str, Handler],
    *,
    auth: bool,
    rate: Rate | None,
    render: Callable[[Problem], ErrorAnswer],
) -> _Endpoint:
    allowed = ", ".join(m for m in handlers if m != "HEAD")
    not_allowed = Problem(
        405,
        f"{path} accepts {allowed} only",
        "method_not_allowed",
        headers=((b"allow", ", ".join(handlers).encode()),),
    )
    return _Endpoint(
        path,
        handlers,
        auth,
        rate,
        render,
        not_allowed=render(not_allowed),
        unauthorized=render(_UNAUTHORIZED),
    )


def _over_limit(wait: float, render: Callable[[Problem], ErrorAnswer]) -> ErrorAnswer:
    problem = problem_for(ClientRateLimited(wait))
    message = f"rate limit exceeded: retry after {max(1, round(wait))}s"
    # Refused before failover tried anything: the client may retry (no x-should-retry: false).
    headers = tuple(h for h in problem.headers if h[0] != b"x-should-retry")
    return render(problem._replace(message=message, headers=headers))


def _safe(exc: BaseException) -> str:
    return f"{type(exc).__name__} (see the log)"
