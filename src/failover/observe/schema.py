"""The request log's tables and their migrations, for SQLite and PostgreSQL.

Migrations are numbered and only ever appended. Each store keeps the numbers it applied in
``schema_version``; applying them is idempotent (those already there are skipped) and safe when
several processes start at once (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so
``failover serve --workers N`` runs them once and every worker may check again.

Tables::

    requests  request_id PK, started_at (epoch s), route, outcome, latency_ms, client ids,
              degraded, stream, deployment, fallback, tokens, cost_usd
    attempts  (request_id, seq) PK, deployment, start_ms, end_ms, outcome, error_class, status,
              hedge, retry, probe

An attempt row is replaced only while it says ``running``: a loser's final outcome can never be
overwritten by the snapshot taken when its request was answered.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATTEMPT_COLUMNS",
    "MIGRATIONS",
    "REQUEST_COLUMNS",
    "Migration",
    "Statements",
    "attempt_upsert",
    "request_insert",
    "statements",
]

REQUEST_COLUMNS = (
    "request_id",
    "started_at",
    "route",
    "outcome",
    "latency_ms",
    "client_request_id",
    "client_key_id",
    "degraded",
    "stream",
    "deployment",
    "fallback",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
)

ATTEMPT_COLUMNS = (
    "request_id",
    "seq",
    "deployment",
    "start_ms",
    "end_ms",
    "outcome",
    "error_class",
    "status",
    "hedge",
    "retry",
    "probe",
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, in each dialect."""

    version: int
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


def _tables(real: str, boolean: str, integer: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE requests (
            request_id TEXT PRIMARY KEY,
            started_at {real} NOT NULL,
            route TEXT NOT NULL,
            outcome TEXT NOT NULL,
            latency_ms {real} NOT NULL,
            client_request_id TEXT,
            client_key_id TEXT,
            degraded {boolean} NOT NULL,
            stream {boolean} NOT NULL,
            deployment TEXT,
            fallback {boolean} NOT NULL,
            prompt_tokens {integer} NOT NULL,
            completion_tokens {integer} NOT NULL,
            cost_usd {real} NOT NULL
        )""",
        "CREATE INDEX requests_started_at ON requests (started_at)",
        f"""CREATE TABLE attempts (
            request_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            deployment TEXT NOT NULL,
            start_ms {real} NOT NULL,
            end_ms {real},
            outcome TEXT NOT NULL,
            error_class TEXT,
            status INTEGER,
            hedge {boolean} NOT NULL,
            retry INTEGER NOT NULL,
            probe {boolean} NOT NULL,
            PRIMARY KEY (request_id, seq)
        )""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        sqlite=_tables("REAL", "INTEGER", "INTEGER"),
        postgres=_tables("DOUBLE PRECISION", "BOOLEAN", "BIGINT"),
    ),
)
"""Every migration, oldest first; the schema is the result of applying them all."""


def _placeholders(count: int, style: str) -> str:
    if style == "qmark":
        return ", ".join("?" * count)
    return ", ".join(f"${n}" for n in range(1, count + 1))


def _rows(columns: int, rows: int) -> str:
    """``rows`` groups of ``columns`` qmark placeholders (several rows in one statement)."""
    group = f"({_placeholders(columns, 'qmark')})"
    return ", ".join([group] * rows)


def request_insert(style: str, rows: int = 1) -> str:
    """The statement inserting one request (a request id is written once; later copies lose);
    with ``rows``, that many requests at once (qmark style only)."""
    columns = ", ".join(REQUEST_COLUMNS)
    values = (
        _rows(len(REQUEST_COLUMNS), rows)
        if rows > 1
        else f"({_placeholders(len(REQUEST_COLUMNS), style)})"
    )
    return f"INSERT INTO requests ({columns}) VALUES {values} ON CONFLICT (request_id) DO NOTHING"


def attempt_upsert(style: str, rows: int = 1) -> str:
    """The statement writing one attempt; it replaces only a row that still says ``running``.
    With ``rows``, that many attempts at once, applied in order (qmark style only)."""
    columns = ", ".join(ATTEMPT_COLUMNS)
    values = (
        _rows(len(ATTEMPT_COLUMNS), rows)
        if rows > 1
        else f"({_placeholders(len(ATTEMPT_COLUMNS), style)})"
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in ATTEMPT_COLUMNS[2:])
    return (
        f"INSERT INTO attempts ({columns}) VALUES {values} "
        f"ON CONFLICT (request_id, seq) DO UPDATE SET {updates} "
        "WHERE attempts.outcome = 'running'"
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement a store runs, in its driver's placeholder style."""

    insert_request: str
    upsert_attempt: str
    request: str  # one request by its id
    attempts: str  # that request's attempts, in order
    requests_since: str  # the requests started at or after a moment, oldest first
    attempts_since: str  # their attempts, by request then in order


def statements(style: str) -> Statements:
    """The statements with ``qmark`` (sqlite3) or ``numeric`` (asyncpg) placeholders."""
    param = _placeholders(1, style)
    requests = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests"
    joined = ", ".join(f"a.{c}" for c in ATTEMPT_COLUMNS)
    return Statements(
        insert_request=request_insert(style),
        upsert_attempt=attempt_upsert(style),
        request=f"{requests} WHERE request_id = {param}",
        attempts=(
            f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts WHERE request_id = {param} "
            "ORDER BY seq"
        ),
        requests_since=f"{requests} WHERE started_at >= {param} ORDER BY started_at",
        attempts_since=(
            f"SELECT {joined} FROM attempts a JOIN requests r ON r.request_id = a.request_id "
            f"WHERE r.started_at >= {param} ORDER BY a.request_id, a.seq"
        ),
    )
