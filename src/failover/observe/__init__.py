"""Observability: the request log, metrics, traces and alerts.

::

    observability.py  Observability: the one object the gateway and server feed
    tracker.py        AttemptTracker: attempts per request, losers after the answer
    records.py        RequestRow, AttemptRow: the request log's rows and SPEC's record shape
    writer.py         RecordWriter: a bounded buffer written in batches, off the hot path
    store.py          RecordStore protocol, open_store, StoreError
    schema.py         tables and migrations (SQLite and PostgreSQL)
    sqlite_store.py   SQLiteStore: sqlite3 on a thread of its own
    postgres_store.py PostgresStore: an asyncpg pool
    metrics.py        Metrics: Prometheus series on a registry of their own
    tracing.py        Tracing: OpenTelemetry spans per request and attempt (OTLP/HTTP)
    alerts.py         Alert, AlertType, AlertRules: which moments deserve an alert
    sinks.py          LogSink, WebhookSink, Gate, Alerter: where alerts go, filtered
    stats.py          failover stats: figures per route and deployment over a window
"""

from failover.observe.alerts import LEVELS, Alert, AlertRules, AlertType
from failover.observe.metrics import CONTENT_TYPE, Metrics
from failover.observe.observability import Observability, config_secrets
from failover.observe.records import AttemptRow, RequestRow, client_key_fingerprint
from failover.observe.stats import StatsReport, parse_since, read_stats, render_stats
from failover.observe.store import (
    RecordStore,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    open_store,
)
from failover.observe.tracing import Tracing

__all__ = [
    "CONTENT_TYPE",
    "LEVELS",
    "Alert",
    "AlertRules",
    "AlertType",
    "AttemptRow",
    "Metrics",
    "Observability",
    "RecordStore",
    "RequestRow",
    "StatsReport",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "Tracing",
    "client_key_fingerprint",
    "config_secrets",
    "open_store",
    "parse_since",
    "read_stats",
    "render_stats",
]
