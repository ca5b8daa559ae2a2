"""Prometheus metrics on a registry of their own (never the process-wide default one).

Two gateways in one process (tests, embedding) each keep their own figures; ``GET /metrics``
serves :meth:`Metrics.text` with :data:`CONTENT_TYPE`. The series, all prefixed ``failover_``::

    requests_total{route,outcome}                 outcome: success, degraded, cancelled, error code
    request_duration_seconds{route}               histogram, arrival to answer (or stream end)
    attempts_total{route,deployment,outcome}      every attempt as it ends, losers included
    attempt_duration_seconds{route,deployment}    histogram
    hedges_total{route,deployment}                attempts started beside a late one
    hedge_wins_total{route,deployment}            ... that answered
    fallbacks_total{route,deployment}             answers from a target other than the first
    degraded_total{route}                         default responses given
    circuit_state{deployment,state}               1 for the deployment's current state, else 0
    alerts_total{type,level}                      alerts raised (before sink filters)
    alert_failures_total{sink}                    alerts a sink failed to deliver or dropped
    redis_failures_total                          calls to the shared state that failed
    store_failures_total                          request log batches the store did not take
    store_dropped_records_total                   request log rows lost (buffer full, refused)

Labels hold route, deployment and outcome names only: no key, no client id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from failover.engine.events import Event, EventKind
from failover.health.base import DeploymentState
from failover.types import AttemptOutcome

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of :meth:`Metrics.text` (Prometheus text format 0.0.4)."""

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class Metrics:
    """Every failover series, registered on :attr:`registry`.

    >>> metrics = Metrics(["main"])
    >>> metrics.set_circuit("main", DeploymentState.CIRCUIT_OPEN)
    >>> b'failover_circuit_state{deployment="main",state="circuit_open"} 1.0' in metrics.text()
    True
    """

    def __init__(self, deployments: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "failover_requests",
            "Requests answered, by route and outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "failover_request_duration_seconds",
            "Seconds from a request's arrival to its answer (a stream: to its end).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            "failover_attempts",
            "Attempts ended, by route, deployment and outcome.",
            ["route", "deployment", "outcome"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "failover_attempt_duration_seconds",
            "Seconds one attempt ran.",
            ["route", "deployment"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.hedges = Counter(
            "failover_hedges",
            "Attempts started beside a late one.",
            ["route", "deployment"],
            registry=registry,
        )
        self.hedge_wins = Counter(
            "failover_hedge_wins",
            "Hedged attempts that answered.",
            ["route", "deployment"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "failover_fallbacks",
            "Answers given by a target other than the route's first.",
            ["route", "deployment"],
            registry=registry,
        )
        self.degraded = Counter(
            "failover_degraded",
            "Default responses given.",
            ["route"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "failover_circuit_state",
            "1 for each deployment's current health state, 0 for the others.",
            ["deployment", "state"],
            registry=registry,
        )
        self.alerts = Counter(
            "failover_alerts",
            "Alerts raised, by type and level.",
            ["type", "level"],
            registry=registry,
        )
        self.alert_failures = Counter(
            "failover_alert_failures",
            "Alerts a sink failed to deliver or had to drop.",
            ["sink"],
            registry=registry,
        )
        self.redis_failures = Counter(
            "failover_redis_failures",
            "Calls to the shared Redis state that failed.",
            registry=registry,
        )
        self.store_failures = Counter(
            "failover_store_failures",
            "Request log batches the store did not take.",
            registry=registry,
        )
        self.store_dropped = Counter(
            "failover_store_dropped_records",
            "Request log rows dropped (buffer full, refused, or left at shutdown).",
            registry=registry,
        )
        self._states: dict[str, DeploymentState] = {}
        # Each labelled series, looked up once: prometheus_client's labels() validates and locks
        # on every call, a measurable share of a request's cost at thousands per second. The
        # label values are route, deployment and outcome names: a small, fixed set.
        self._series: dict[tuple[object, ...], Any] = {}
        for name in deployments:
            self.set_circuit(name, DeploymentState.AVAILABLE)

    def on_event(self, event: Event) -> None:
        """Count what an engine event says."""
        kind = event.kind
        if kind is EventKind.ATTEMPT_ENDED and event.attempt is not None:
            record = event.attempt
            deployment = record.deployment
            self._series_of(self.attempts, event.route, deployment, record.outcome).inc()
            if record.end is not None:
                self._series_of(self.attempt_duration, event.route, deployment).observe(
                    max(0.0, record.end - record.start)
                )
            if record.hedge and record.outcome == AttemptOutcome.SUCCESS.value:
                self._series_of(self.hedge_wins, event.route, deployment).inc()
        elif kind is EventKind.HEDGE_STARTED and event.deployment is not None:
            self._series_of(self.hedges, event.route, event.deployment).inc()

    def request_finished(
        self, *, route: str, outcome: str, latency: float, fallback_to: str | None
    ) -> None:
        """Count one answered request; ``fallback_to`` names the non-first target that answered."""
        self._series_of(self.requests, route, outcome).inc()
        self._series_of(self.request_duration, route).observe(max(0.0, latency))
        if outcome == "degraded":
            self._series_of(self.degraded, route).inc()
        if fallback_to is not None:
            self._series_of(self.fallbacks, route, fallback_to).inc()

    def _series_of(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered."""
        key = (id(metric), *labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = metric.labels(*labels)
        return series

    def set_circuit(self, deployment: str, state: DeploymentState | str) -> None:
        """Make ``state`` the deployment's current one in ``circuit_state``."""
        state = DeploymentState(state)
        if self._states.get(deployment) is state:
            return
        self._states[deployment] = state
        for each in DeploymentState:
            self.circuit_state.labels(deployment, each.value).set(1 if each is state else 0)

    def set_circuits(self, states: Mapping[str, DeploymentState | str]) -> None:
        """Every deployment's current state at once (a health snapshot)."""
        for deployment, state in states.items():
            self.set_circuit(deployment, state)

    def text(self) -> bytes:
        """The Prometheus exposition of every series."""
        return generate_latest(self.registry)

    def __repr__(self) -> str:
        return f"<Metrics deployments={len(self._states)}>"
