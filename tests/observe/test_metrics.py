"""Prometheus metrics: the expected series, a registry of their own, circuit states."""

from __future__ import annotations

import prometheus_client

from failover.engine.events import Event, EventKind
from failover.health.base import DeploymentState
from failover.health.breaker import DeploymentStatus
from failover.observe.metrics import CONTENT_TYPE, Metrics
from failover.types import AttemptRecord


def _feed(metrics: Metrics) -> None:
    main = AttemptRecord("main", 0.0, 1.2, "lost_completed")
    hedge = AttemptRecord("fallback", 0.2, 0.5, "success", hedge=True)
    metrics.on_event(Event(EventKind.HEDGE_STARTED, "intent", "r1", 0.2, "fallback", hedge))
    metrics.on_event(Event(EventKind.ATTEMPT_ENDED, "intent", "r1", 0.5, "fallback", hedge))
    metrics.on_event(Event(EventKind.ATTEMPT_ENDED, "intent", "r1", 1.2, "main", main))
    metrics.request_finished(route="intent", outcome="success", latency=0.5, fallback_to="fallback")
    metrics.request_finished(route="intent", outcome="degraded", latency=5.5, fallback_to=None)


def test_expected_series() -> None:
    """Requests, attempts, hedges and wins, fallbacks, degraded answers and latencies appear."""
    metrics = Metrics(["main", "fallback"])
    _feed(metrics)
    metrics.store_dropped.inc(3)
    metrics.redis_failures.inc()
    text = metrics.text().decode()
    for line in [
        'failover_requests_total{outcome="success",route="intent"} 1.0',
        'failover_requests_total{outcome="degraded",route="intent"} 1.0',
        'failover_attempts_total{deployment="fallback",outcome="success",route="intent"} 1.0',
        'failover_attempts_total{deployment="main",outcome="lost_completed",route="intent"} 1.0',
        'failover_hedges_total{deployment="fallback",route="intent"} 1.0',
        'failover_hedge_wins_total{deployment="fallback",route="intent"} 1.0',
        'failover_fallbacks_total{deployment="fallback",route="intent"} 1.0',
        'failover_degraded_total{route="intent"} 1.0',
        'failover_request_duration_seconds_bucket{le="0.5",route="intent"} 1.0',
        'failover_request_duration_seconds_count{route="intent"} 2.0',
        'failover_attempt_duration_seconds_count{deployment="main",route="intent"} 1.0',
        'failover_circuit_state{deployment="main",state="available"} 1.0',
        "failover_store_dropped_records_total 3.0",
        "failover_redis_failures_total 1.0",
        "failover_store_failures_total 0.0",
    ]:
        assert line in text, line
    assert CONTENT_TYPE.startswith("text/plain")


def test_registry_is_private() -> None:
    """Two Metrics keep separate figures, and the process-wide registry stays untouched."""
    first, second = Metrics(["main"]), Metrics(["main"])
    _feed(first)
    assert b"failover_hedges_total{" in first.text()
    assert b"failover_hedges_total{" not in second.text()
    assert b"failover_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_circuit_state_is_one_hot() -> None:
    """A deployment's gauge is 1 for its current state only, from transitions or snapshots."""
    metrics = Metrics(["main"])
    metrics.set_circuit("main", DeploymentState.CIRCUIT_OPEN)
    text = metrics.text().decode()
    assert 'failover_circuit_state{deployment="main",state="circuit_open"} 1.0' in text
    assert 'failover_circuit_state{deployment="main",state="available"} 0.0' in text
    status = DeploymentStatus(
        "main", DeploymentState.HALF_OPEN, 5, None, None, False, None, None, None, None, 0
    )
    metrics.set_circuits({"main": status.state})
    text = metrics.text().decode()
    assert 'failover_circuit_state{deployment="main",state="half_open"} 1.0' in text
    assert 'failover_circuit_state{deployment="main",state="circuit_open"} 0.0' in text
