"""Observability: the one object the gateway and the server feed, and what it feeds.

::

    engine events ──on_event──────┐
    health changes ─on_transition─┤                 ┌─> request log (writer -> store)
    answers ──request_finished────┴─> Observability ├─> metrics (own Prometheus registry)
                                                    ├─> traces (own tracer provider; optional)
                                                    └─> alerts (rules -> sinks)

Every entry point is synchronous, quick and never raises: a bug here is logged and the request
goes on. Everything slow (the store, the webhook, the trace exporter) runs in the background and
is bounded; :meth:`Observability.aclose` flushes it within a time limit.

>>> from failover.config import Config, StoreConfig
>>> Observability.from_config(Config(store=StoreConfig(url="none")))
<Observability store=none tracing=off sinks=['log']>
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import SpanProcessor

from failover.clock import Clock, LoopClock
from failover.config import Config
from failover.engine.events import Event, EventKind
from failover.errors import ErrorClass, StoreError, StoreUnavailable, UpstreamError
from failover.health.breaker import DeploymentStatus, Transition
from failover.observe.alerts import Alert, AlertRules
from failover.observe.metrics import CONTENT_TYPE, Metrics
from failover.observe.records import AttemptRow, request_row
from failover.observe.sinks import Alerter
from failover.observe.store import RecordStore, describe_url
from failover.observe.stores import open_store
from failover.observe.tracing import Tracing
from failover.observe.tracker import AttemptTracker, LoserEnd
from failover.observe.writer import RecordWriter, merge_rows
from failover.providers.redact import Redactor
from failover.types import AttemptRecord, ChatRequest, ChatResult

__all__ = ["Observability", "config_secrets"]

logger = logging.getLogger(__name__)

_STARTED = EventKind.ATTEMPT_STARTED
_ENDED = EventKind.ATTEMPT_ENDED


class Observability:
    """Request log, metrics, traces and alerts of one gateway.

    Build it with :meth:`from_config`; give :meth:`on_event` to the engine as its observer,
    :meth:`on_transition` and :meth:`redis_failed` to health, and call :meth:`request_finished`
    once per answered request with the attempt records the engine filled::

        obs = Observability.from_config(config)
        await obs.start()
        engine = Engine(providers, config.deployments, health, observer=obs)
        attempts: list[AttemptRecord] = []
        result = await engine.chat(route, request, request_id="req_1", attempts=attempts)
        obs.request_finished(request_id="req_1", route="intent", ..., records=attempts)
        record = await obs.get_record("req_1")
        await obs.aclose()

    (:class:`~failover.Gateway` does all of this for every request it runs.)
    """

    metrics_content_type = CONTENT_TYPE
    """The Content-Type to serve :meth:`metrics_text` with."""

    def __init__(
        self,
        config: Config,
        *,
        store: RecordStore | None,
        tracing: Tracing | None = None,
        alerter: Alerter | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
        store_name: str = "store",
        buffer_capacity: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.1,
        read_timeout: float = 2.0,
    ) -> None:
        self.config = config
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._wall_clock = wall_clock
        self.redact = redactor if redactor is not None else Redactor(config_secrets(config))
        self.metrics = Metrics(config.deployments)
        for name, deployment in config.deployments.items():
            if not deployment.configured:
                self.metrics.set_circuit(name, "not_configured")
        self.tracker = AttemptTracker()
        self.tracing = tracing
        if tracing is not None:
            tracing.count_export_failures(self.metrics.trace_export_failures.inc)
        self.alerter = (
            alerter
            if alerter is not None
            else Alerter.from_config(config.alerts, self._clock, on_failure=self._sink_failed)
        )
        self.rules = AlertRules(
            config.routes, redact=self.redact, clock=self._clock, wall_clock=wall_clock
        )
        self.store = store
        self.writer = (
            RecordWriter(
                store,
                name=store_name,
                capacity=buffer_capacity,
                batch_size=batch_size,
                interval=flush_interval,
                on_dropped=self.metrics.store_dropped.inc,
                on_failure=self.metrics.store_failures.inc,
            )
            if store is not None
            else None
        )
        self._read_timeout = read_timeout
        self._prices = {name: d.price for name, d in config.deployments.items()}
        self._health_snapshot: Callable[[], Mapping[str, DeploymentStatus]] | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        span_processor: SpanProcessor | None = None,
        **options: Any,
    ) -> Observability:
        """Everything ``store``, ``alerts`` and ``telemetry`` ask for (nothing started yet).

        ``span_processor`` turns tracing on with that processor even without an
        ``otlp_endpoint`` (tests pass an in-memory exporter); ``options`` go to the constructor.
        """
        redactor = Redactor(config_secrets(config))
        if span_processor is not None:
            tracing: Tracing | None = Tracing(
                span_processor=span_processor,
                deployments=config.deployments,
                redact=redactor,
                service_name=config.telemetry.service_name,
                capture_content=config.telemetry.capture_content,
            )
        else:
            tracing = Tracing.from_config(config.telemetry, config.deployments, redactor)
        return cls(
            config,
            store=open_store(config.store.url),
            tracing=tracing,
            clock=clock,
            wall_clock=wall_clock,
            redactor=redactor,
            store_name=config.store.url,
            **options,
        )

    # -- what the engine, health and the server call ---------------------------------------------

    def on_event(self, event: Event) -> None:
        """The engine's observer: quick, never blocks, never raises."""
        try:
            kind = event.kind
            if kind is _STARTED:
                return  # counted, traced and alerted on when it ends
            if kind is _ENDED:
                loser = self.tracker.ended(event)
                if loser is not None:
                    self._loser_ended(loser)
            self.metrics.on_event(event)
            alert = self.rules.on_event(event)
            if alert is not None:
                self._raise(alert)
        except Exception:
            logger.exception("observability failed on a %s event", event.kind.value)

    def on_transition(self, transition: Transition) -> None:
        """A deployment's health changed: its circuit gauge, and an alert when it deserves one."""
        try:
            self.metrics.set_circuit(transition.deployment, transition.after)
            alert = self.rules.on_transition(transition)
            if alert is not None:
                self._raise(alert)
        except Exception:
            logger.exception("observability failed on a health transition")

    def request_finished(
        self,
        *,
        request_id: str,
        route: str,
        started_at_wall: float,
        latency: float,
        result: ChatResult | None,
        error: BaseException | None,
        client_key_id: str | None = None,
        client_request_id: str | None = None,
        stream: bool = False,
        request: ChatRequest | None = None,
        records: Sequence[AttemptRecord],
    ) -> None:
        """One request was answered (a stream: it ended): record, count and trace it.

        ``started_at_wall`` is its arrival in epoch seconds and ``latency`` the seconds to the
        answer. Exactly one of ``result`` (success or default response; for a stream, a
        :class:`~failover.types.ChatResult` of the stream's deployment, usage and attempts) and
        ``error`` (what the client was answered with; ``CancelledError`` when it left) is set.
        ``client_key_id`` is a fingerprint
        (:func:`~failover.server.auth.key_id`), never a key. ``request`` is
        only read with ``telemetry.capture_content``. ``records`` are the request's attempt
        records, the live list the engine filled (``attempts=`` of
        :meth:`~failover.engine.Engine.chat` and ``open_stream``): the row and the spans are
        made from them now, and those still running are completed when they end. Never raises.
        """
        try:
            first = self._first_target(route)
            row = request_row(
                request_id=request_id,
                route=route,
                first_target=first,
                started_at_wall=started_at_wall,
                latency=latency,
                result=result,
                error=error,
                client_key_id=client_key_id,
                client_request_id=client_request_id,
                stream=stream,
                records=records,
                prices=self._prices,
                redact=self.redact,
            )
            if self.writer is not None:
                self.writer.submit(row)
            self.tracker.finished(request_id, records)
            self.metrics.request_finished(
                route=route,
                outcome=_metric_outcome(row.outcome, error),
                latency=latency,
                fallback_to=row.deployment if row.fallback else None,
            )
            self.rules.request_finished(route)
            if self.tracing is not None:
                self.tracing.request_finished(
                    request_id=request_id,
                    route=route,
                    started_at_wall=started_at_wall,
                    latency=latency,
                    outcome=row.outcome,
                    result=result,
                    records=records,
                    request=request,
                    stream=stream,
                )
        except Exception:
            logger.exception("observability failed to record request %s", request_id)

    def redis_failed(self) -> None:
        """Count one failed call to the shared Redis state (the state backend's hook)."""
        self.metrics.redis_failures.inc()

    def watch_health(self, snapshot: Callable[[], Mapping[str, DeploymentStatus]]) -> None:
        """Read circuit states from ``snapshot`` (``health.snapshot``) at each scrape.

        With shared Redis state, other gateways' transitions are seen this way too.
        """
        self._health_snapshot = snapshot

    def metrics_text(self) -> bytes:
        """The Prometheus exposition (serve it with :attr:`metrics_content_type`)."""
        if self._health_snapshot is not None:
            try:
                snapshot = self._health_snapshot()
                self.metrics.set_circuits({name: s.state for name, s in snapshot.items()})
            except Exception:
                logger.exception("reading the health snapshot for metrics failed")
        return self.metrics.text()

    async def get_record(self, request_id: str) -> dict[str, Any] | None:
        """The record of one request, or None; rows not yet written are included.

        Raises :class:`~failover.observe.store.StoreUnavailable` when the store cannot be read
        and nothing about the request is buffered (answer 503, not 404).
        """
        if self.writer is None or self.store is None:
            return None
        pending = self.writer.pending(request_id)
        stored = None
        try:
            async with asyncio.timeout(self._read_timeout):
                stored = await self.store.get(request_id)
        except (StoreError, TimeoutError) as exc:
            if not pending:
                if isinstance(exc, StoreError):
                    raise
                raise StoreUnavailable(
                    f"request log {self.writer.name}: no answer in time"
                ) from None
        row = merge_rows(stored, pending)
        return row.as_dict() if row is not None else None

    async def migrate(self) -> None:
        """Run the store's migrations now (``failover serve`` does it once before its workers).

        Raises :class:`~failover.observe.store.StoreError`; without a store it does nothing.
        """
        if self.store is not None:
            await self.store.migrate()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background writer and alert sinks (call on the gateway's event loop)."""
        if self.writer is not None:
            await self.writer.start()
        await self.alerter.start()

    async def aclose(self, grace: float = 5.0) -> None:
        """Flush the request log, alerts and spans (each within ``grace`` seconds), then stop."""
        try:
            if self.writer is not None:
                await self.writer.aclose(grace)
        finally:
            try:
                await self.alerter.aclose()
            finally:
                if self.tracing is not None:
                    await self.tracing.aclose(grace)

    # -- inside -----------------------------------------------------------------------------------

    def _loser_ended(self, loser: LoserEnd) -> None:
        if self.writer is not None:
            self.writer.submit(AttemptRow.of(loser.request_id, loser.seq, loser.record))
        if self.tracing is not None:
            self.tracing.loser_ended(loser)

    def _sink_failed(self, sink: str) -> None:
        self.metrics.alert_failures.labels(sink).inc()

    def _raise(self, alert: Alert) -> None:
        self.metrics.alerts.labels(alert.type.value, alert.level.name).inc()
        self.alerter.emit(alert)

    def _first_target(self, route: str) -> str | None:
        config = self.config.routes.get(route)
        if config is not None:
            return config.targets[0]
        # A deployment asked for by name is a route of that one deployment.
        return route if route in self.config.deployments else None

    def __repr__(self) -> str:
        store = describe_url(self.config.store.url) if self.store is not None else "none"
        tracing = "on" if self.tracing is not None else "off"
        sinks = [sink.name for _, sink in self.alerter.sinks]
        return f"<Observability store={store} tracing={tracing} sinks={sinks}>"


def _metric_outcome(outcome: str, error: BaseException | None) -> str:
    """A request's outcome as a metric label: a provider's 400 is answered with the provider's
    own code (any string it chose), which would give the label unbounded values; it counts as
    ``bad_request``."""
    if isinstance(error, UpstreamError) and error.error_class is ErrorClass.BAD_REQUEST:
        return ErrorClass.BAD_REQUEST.value
    return outcome


def config_secrets(config: Config) -> list[str]:
    """Every secret the config holds: provider keys, client and admin keys, URL credentials."""
    secrets = [
        d.api_key.get_secret_value() for d in config.deployments.values() if d.api_key is not None
    ]
    secrets += [key.get_secret_value() for key in config.server.api_keys]
    if config.server.admin_key is not None:
        secrets.append(config.server.admin_key.get_secret_value())
    for url in (config.store.url, config.state.url):
        password = urlsplit(url).password if "://" in url else None
        if password:
            secrets.append(password)
    secrets += [alert.url for alert in config.alerts if alert.url]
    return secrets
