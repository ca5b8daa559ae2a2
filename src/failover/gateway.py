"""Gateway: wires a config into providers, health and the engine, and owns their lifecycle.

The library and the HTTP server share it: one :class:`Gateway` per process holds the single
upstream HTTP client, one adapter per deployment, the health state, and the engine with its
background losers. ``async with`` (or :meth:`Gateway.aclose`) ends all of them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from failover.call import Call, Caller, FinishedHook, Surface
from failover.clock import Clock, LoopClock
from failover.config import (
    Config,
    DeploymentConfig,
    RouteConfig,
    config_from_dict,
    config_from_env,
    load_config,
)
from failover.engine.engine import Engine
from failover.engine.events import Event, Observer
from failover.errors import UnknownModel
from failover.health.base import Health
from failover.health.breaker import DeploymentStatus, Transition
from failover.health.memory import MemoryHealth
from failover.observe import Observability
from failover.providers import build_provider
from failover.providers.http import HttpClient
from failover.types import ChatRequest, ChatResult, StreamChunk

__all__ = ["Gateway"]


class RequestIds:
    """Request ids, the keys of the records: ``req_``, the time in milliseconds (12 hex digits),
    then 64 random bits (16 hex digits) from the OS's CSPRNG.

    Time first, so that ids sort by arrival: the request log inserts them at the end of its
    index instead of at random places in it (measured on SQLite at 100,000 rows: 3.5 µs per
    request against 16.5, and the gap grows with the table). The random part keeps them
    unguessable. Its bytes are read for 256 ids at a time: under load one ``getrandom`` call per
    request cost several µs here. A forked child draws a pool of its own (it must not hand out
    its parent's next ids).

    >>> ids = RequestIds()
    >>> first, second = ids(), ids()
    >>> first != second and len(first) == 32 and first.startswith("req_")
    True
    """

    __slots__ = ("__weakref__", "_at", "_pool")

    _BYTES = 8
    _BATCH = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_pool(ref()))

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(self._BYTES * self._BATCH)
            at = 0
        self._at = at + self._BYTES
        stamp = int(time.time() * 1000)
        return f"req_{stamp:012x}{self._pool[at : at + self._BYTES].hex()}"

    def forget(self) -> None:
        """Drop the random bytes drawn but not used (the next call draws anew)."""
        self._pool, self._at = b"", 0

    def __repr__(self) -> str:
        return f"<RequestIds left={(len(self._pool) - self._at) // self._BYTES}>"


def _forget_pool(ids: RequestIds | None) -> None:
    if ids is not None:
        ids.forget()


class Gateway:
    """Routes chat requests over deployments with retries, fallback, hedging and deadlines.

    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with Gateway.from_file("failover.yaml") as gw:
    ...         result = await gw.chat("intent", messages=[{"role": "user", "content": "hi"}])
    ...         print(result.text, result.deployment, result.degraded)

    ``model`` in :meth:`chat` and :meth:`stream` names a route, or a deployment directly (a route
    of that one deployment with the default policy). Every request, from these methods or from
    the HTTP server, goes through :meth:`begin`, the one front door (:mod:`failover.call`), and is
    recorded, metered, traced and alerted on by :attr:`observability` as the config's ``store``,
    ``telemetry`` and ``alerts`` say; ``on_finished`` is then told of it too. ``health``, ``rng``,
    ``observer`` (an extra engine observer) and ``observability`` (one the caller starts and
    closes) are for tests and embedding; the defaults are what production uses. Time is the
    running event loop's: tests inject it by running on
    :class:`~failover.clock.VirtualTimeLoop`.
    """

    def __init__(
        self,
        config: Config,
        *,
        health: Health | None = None,
        rng: random.Random | None = None,
        observer: Observer | None = None,
        observability: Observability | None = None,
        on_finished: FinishedHook | None = None,
    ) -> None:
        self.config = config
        self.on_finished = on_finished
        self._clock: Clock = LoopClock()
        self._http = HttpClient()
        self.providers = {
            name: build_provider(deployment, self._http)
            for name, deployment in config.deployments.items()
        }
        # An Observability passed in belongs to the caller, who starts and closes it.
        self._owns_observability = observability is None
        self.observability = (
            observability
            if observability is not None
            else Observability.from_config(config, clock=self._clock)
        )
        self.health: Health = (
            health
            if health is not None
            else _health(
                config,
                self._clock,
                self.observability.on_transition,
                self.observability.redis_failed,
            )
        )
        snapshot = getattr(self.health, "snapshot", None)
        if snapshot is not None:
            self.observability.watch_health(snapshot)
        self.engine = Engine(
            self.providers,
            config.deployments,
            self.health,
            rng=rng,
            observer=(
                self.observability
                if observer is None
                else _BothObservers(self.observability, observer)
            ),
        )
        self.routes: dict[str, RouteConfig] = _routes(config)
        for route in self.routes.values():
            self.engine.prepare(route)
        self._runner: asyncio.Runner | None = None
        self._started = False
        self.request_ids = RequestIds()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Gateway:
        """A gateway from a YAML config file (a ``.env`` beside it is read first)."""
        return cls(load_config(Path(path)), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> Gateway:
        """A gateway from the same structure as the config file."""
        return cls(config_from_dict(data), **kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> Gateway:
        """The zero-config gateway: one route ``default`` over the provider keys in ``env``."""
        return cls(config_from_env(env), **kwargs)

    def route(self, model: str) -> RouteConfig:
        """The route a request for ``model`` runs on; :class:`UnknownModel` when there is none."""
        route = self.routes.get(model)
        if route is None:
            raise UnknownModel(model, sorted(self.routes))
        return route

    def begin(
        self,
        model: str,
        request: ChatRequest,
        *,
        stream: bool = False,
        surface: Surface = Surface.CHAT,
        caller: Caller | None = None,
        request_id: str | None = None,
    ) -> Call:
        """The front door: one request on the route ``model``, with its id and arrival time.

        Run it with :meth:`Call.complete` or :meth:`Call.open_stream`; it reports itself to
        :attr:`observability` (and ``on_finished``) once answered. Raises
        :class:`~failover.errors.UnknownModel` when no route or deployment has that name.
        """
        return Call(
            self,
            self.route(model),
            request,
            request_id or self.request_ids(),
            stream=stream,
            surface=surface,
            caller=caller,
        )

    async def chat(
        self,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        *,
        request_id: str | None = None,
        **params: Any,
    ) -> ChatResult:
        """Answer one chat request over the route ``model``.

        ``params`` are the other OpenAI Chat Completions fields (``temperature``, ``max_tokens``,
        ``tools``, ...). Returns a :class:`~failover.types.ChatResult`; raises
        :class:`~failover.errors.AllTargetsFailed`, :class:`~failover.errors.NoTargetAvailable`
        or the provider's 400 (:class:`~failover.errors.UpstreamStatusError`) when the route has
        no default response to give.
        """
        request = ChatRequest(messages=[dict(m) for m in messages], params=params)
        return await self.begin(model, request, request_id=request_id).complete()

    async def stream(
        self,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        *,
        request_id: str | None = None,
        **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Stream one chat request as OpenAI ``chat.completion.chunk`` dicts.

        Failover and hedging work until the first content chunk; a failure after it raises
        from the iterator (never a silent end). A consumer that stops reading closes the
        upstream stream.
        """
        request = ChatRequest(messages=[dict(m) for m in messages], params=params)
        call = self.begin(model, request, stream=True, request_id=request_id)
        async with await call.open_stream() as opened:
            async for chunk in opened:
                yield chunk

    def chat_sync(
        self, model: str, messages: Iterable[Mapping[str, Any]], **params: Any
    ) -> ChatResult:
        """The blocking form of :meth:`chat`, for code without an event loop.

        The gateway then keeps a private event loop until :meth:`close_sync`; do not mix it with
        the async methods of the same gateway.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("chat_sync() called inside an event loop: use 'await gw.chat()'")
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self.chat(model, messages, **params))

    def close_sync(self) -> None:
        """End what :meth:`chat_sync` started (its loop, connections and losers)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            try:
                runner.run(self.aclose())
            finally:
                runner.close()

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of this gateway (serve it with
        :attr:`metrics_content_type`)."""
        return self.observability.metrics_text()

    @property
    def metrics_content_type(self) -> str:
        return self.observability.metrics_content_type

    async def record(self, request_id: str) -> dict[str, Any] | None:
        """One request's record, or None; raises :class:`~failover.errors.StoreUnavailable`
        when the request log cannot be read (and nothing of the request is still buffered)."""
        return await self.observability.get_record(request_id)

    async def status(self) -> Mapping[str, DeploymentStatus]:
        """Each deployment's health row, as the health backend sees it now."""
        status = getattr(self.health, "status", None)
        if status is None:
            return {}
        rows: Mapping[str, DeploymentStatus] = await status()
        return rows

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Start the background work (request log writer, alert sinks); idempotent.

        ``async with`` and the first request call it; call it yourself to start early.
        """
        if not self._started:
            self._started = True
            if self._owns_observability:
                await self.observability.start()

    async def aclose(self) -> None:
        """End background losers, flush the request log, close upstream connections."""
        try:
            await self.engine.aclose()
        finally:
            try:
                # After the engine: losers it ended at shutdown are still recorded.
                if self._owns_observability:
                    await self.observability.aclose()
            finally:
                try:
                    await self._http.aclose()
                finally:
                    close = getattr(self.health, "aclose", None)
                    if close is not None:
                        await close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<Gateway routes={len(self.routes)} deployments={len(self.providers)} "
            f"background={len(self.engine.background)}>"
        )


class _BothObservers:
    """The gateway's own observability, then an observer the embedding code passed."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Observer, second: Observer) -> None:
        self._first, self._second = first, second

    def on_event(self, event: Event) -> None:
        self._first.on_event(event)
        self._second.on_event(event)


def _health(
    config: Config,
    clock: Clock,
    on_transition: Callable[[Transition], None],
    on_failure: Callable[[], None],
) -> Health:
    if config.state.backend == "redis":
        from failover.state import RedisHealth

        return RedisHealth.from_config(
            config.state,
            config.health,
            config.deployments,
            clock,
            on_transition=on_transition,
            on_failure=on_failure,
        )
    return MemoryHealth(config.health, config.deployments, clock, on_transition=on_transition)


def _routes(config: Config) -> dict[str, RouteConfig]:
    """Configured routes, plus a one-target route for each deployment not shadowed by one."""
    routes: dict[str, RouteConfig] = {}
    for name, deployment in config.deployments.items():
        routes[name] = _direct_route(name, deployment)
    routes.update(config.routes)
    return routes


def _direct_route(name: str, deployment: DeploymentConfig) -> RouteConfig:
    # Asking for a deployment by name gets it alone, with the default policy; its deadline
    # still bounds the request, and never below one full attempt.
    deadline = max(60.0, deployment.timeout * (1 + deployment.max_retries))
    return RouteConfig(name=name, targets=(name,), deadline=deadline)


async def migrate_store(config: Config) -> None:
    """Run the request log's migrations of ``config`` now (``failover serve`` does it once,
    before its workers); raises :class:`~failover.errors.StoreError`."""
    observability = Observability.from_config(config)
    try:
        await observability.migrate()
    finally:
        await observability.aclose()
