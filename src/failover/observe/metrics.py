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
    trace_export_failures_total                   span batches the OTLP endpoint did not take

Labels hold route, deployment and outcome names only: no key, no client id.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from failover.engine.events import Event, EventKind
from failover.health.base import DeploymentState
from failover.types import AttemptOutcome

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of :meth:`Metrics.text` (Prometheus text format 0.0.4)."""

_LATENCY_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
_ENDED = EventKind.ATTEMPT_ENDED
_HEDGE_STARTED = EventKind.HEDGE_STARTED
_SUCCESS = AttemptOutcome.SUCCESS.value


class _Counts:
    """A counter family kept as plain numbers per label values, turned into series at scrape.

    Counting is a dict update on the event loop (no lock, no child object): the hot path's
    counters are this, the rare ones prometheus_client's own.
    """

    __slots__ = ("help", "labels", "name", "values")

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...]) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + 1.0

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(key, value)
        return family


class _Latencies:
    """A histogram family kept as plain bucket counts per label values (see :class:`_Counts`)."""

    __slots__ = ("bounds", "help", "labels", "name", "values")

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.bounds = _LATENCY_BUCKETS
        # Per label values: the count of each bucket (not cumulative), then +Inf's, then the sum.
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], seconds: float) -> None:
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, seconds)] += 1.0
        counts[-1] += seconds

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        edges = [repr(bound) for bound in self.bounds] + ["+Inf"]
        for key, counts in self.values.items():
            buckets = list(zip(edges, accumulate(counts[:-1]), strict=True))
            family.add_metric(key, buckets, counts[-1])
        return family


class _Plain:
    """The collector of the plain families, registered on the metrics' registry."""

    __slots__ = ("families",)

    def __init__(self, families: Sequence[_Counts | _Latencies]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()

    def describe(self) -> list[Metric]:
        return []  # nothing to check for clashes at registration: the names are ours


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
        # What every request and attempt counts: plain numbers (:class:`_Counts`).
        self.requests = _Counts(
            "failover_requests", "Requests answered, by route and outcome.", ["route", "outcome"]
        )
        self.request_duration = _Latencies(
            "failover_request_duration_seconds",
            "Seconds from a request's arrival to its answer (a stream: to its end).",
            ["route"],
        )
        self.attempts = _Counts(
            "failover_attempts",
            "Attempts ended, by route, deployment and outcome.",
            ["route", "deployment", "outcome"],
        )
        self.attempt_duration = _Latencies(
            "failover_attempt_duration_seconds", "Seconds one attempt ran.", ["route", "deployment"]
        )
        self.hedges = _Counts(
            "failover_hedges", "Attempts started beside a late one.", ["route", "deployment"]
        )
        self.hedge_wins = _Counts(
            "failover_hedge_wins", "Hedged attempts that answered.", ["route", "deployment"]
        )
        self.fallbacks = _Counts(
            "failover_fallbacks",
            "Answers given by a target other than the route's first.",
            ["route", "deployment"],
        )
        self.degraded = _Counts("failover_degraded", "Default responses given.", ["route"])
        registry.register(
            _Plain(
                [
                    self.requests,
                    self.request_duration,
                    self.attempts,
                    self.attempt_duration,
                    self.hedges,
                    self.hedge_wins,
                    self.fallbacks,
                    self.degraded,
                ]
            )
        )
        # The rare ones (and those counted from other threads): prometheus_client's own.
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
        self.trace_export_failures = Counter(
            "failover_trace_export_failures",
            "Span batches the OTLP endpoint did not take (failed, or dropped while it was down).",
            registry=registry,
        )
        self._states: dict[str, DeploymentState] = {}
        for name in deployments:
            self.set_circuit(name, DeploymentState.AVAILABLE)

    def on_event(self, event: Event) -> None:
        """Count what an engine event says."""
        kind = event.kind
        if kind is _ENDED:
            record = event.attempt
            if record is None:
                return
            key = (event.route, record.deployment)
            self.attempts.inc((*key, record.outcome))
            if record.end is not None:
                self.attempt_duration.observe(key, max(0.0, record.end - record.start))
            if record.hedge and record.outcome == _SUCCESS:
                self.hedge_wins.inc(key)
        elif kind is _HEDGE_STARTED and event.deployment is not None:
            self.hedges.inc((event.route, event.deployment))

    def request_finished(
        self, *, route: str, outcome: str, latency: float, fallback_to: str | None
    ) -> None:
        """Count one answered request; ``fallback_to`` names the non-first target that answered."""
        self.requests.inc((route, outcome))
        self.request_duration.observe((route,), max(0.0, latency))
        if outcome == "degraded":
            self.degraded.inc((route,))
        if fallback_to is not None:
            self.fallbacks.inc((route, fallback_to))

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
