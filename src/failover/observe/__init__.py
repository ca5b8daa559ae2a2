"""Observability: the request log, metrics, traces and alerts.

::

    observability.py  Observability: the one object the gateway and server feed
    tracker.py        AttemptTracker: the request and place of a loser that ends after its report
    records.py        RequestRow, AttemptRow: the request log's rows and the record's shape
    writer.py         RecordWriter: a bounded buffer written in batches, off the hot path
    store.py          RecordStore protocol, the rows as values
    stores.py         open_store: the store a URL names
    schema.py         tables and migrations (SQLite and PostgreSQL)
    sqlite_store.py   SQLiteStore: sqlite3 on a thread of its own
    postgres_store.py PostgresStore: an asyncpg pool
    metrics.py        Metrics: Prometheus series on a registry of their own
    tracing.py        Tracing: OpenTelemetry spans per request and attempt (OTLP/HTTP)
    alerts.py         Alert, AlertType, AlertRules: which moments deserve an alert
    sinks.py          LogSink, WebhookSink, Gate, Alerter: where alerts go, filtered
    stats.py          failover stats: figures per route and deployment over a window
"""

from failover.observe.observability import Observability
from failover.observe.stores import open_store
from failover.observe.tracing import Tracing

__all__ = [
    "Observability",
    "Tracing",
    "open_store",
]
