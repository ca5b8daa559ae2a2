"""The PostgreSQL request log: an ``asyncpg`` pool, opened on first use.

Nothing connects at construction, and a database that is down at start-up does not stop the
gateway: each call tries to connect (with a short timeout) and fails with
:class:`~failover.observe.store.StoreUnavailable`, which the writer counts and retries later.
``asyncpg`` reads extra URL query parameters as server settings, so
``postgresql://host/db?search_path=failover`` keeps the tables in a schema of their own.

>>> PostgresStore("postgresql://app:secret@db.internal/logs")
<PostgresStore 'postgresql://db.internal'>
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from failover.observe.records import RequestRow, Row
from failover.observe.schema import (
    ATTEMPT_COLUMNS,
    MIGRATIONS,
    REQUEST_COLUMNS,
    attempt_upsert,
    request_insert,
)
from failover.observe.store import (
    StoreRejected,
    StoreUnavailable,
    Window,
    attempt_from_values,
    attempt_values,
    describe_url,
    request_values,
    row_from_values,
    split,
)

__all__ = ["PostgresStore"]

T = TypeVar("T")

# Any fixed pair identifies our lock; the schema's hash keeps separate schemas independent.
_MIGRATION_LOCK = 0x6661696C  # "fail"

# Errors that say the server or the connection is gone, not that our data is wrong.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


class PostgresStore:
    """A request log in PostgreSQL at ``url``.

    ``connect_timeout`` bounds each connection attempt and ``command_timeout`` each statement,
    so a database that hangs costs the writer at most that long per batch.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 3.0,
        command_timeout: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._max_connections = max_connections
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._migrated = False

    async def migrate(self) -> None:
        await self._run(self._migrate, migrated_first=False)

    async def write(self, rows: Sequence[Row]) -> None:
        await self._run(lambda connection: self._write(connection, rows))

    async def get(self, request_id: str) -> RequestRow | None:
        return await self._run(lambda connection: self._get(connection, request_id))

    async def window(self, since: float) -> Window:
        return await self._run(lambda connection: self._window(connection, since))

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout)
            except _UNAVAILABLE:
                pool.terminate()

    async def _run(self, work: Callable[[Any], Awaitable[T]], *, migrated_first: bool = True) -> T:
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=self._connect_timeout) as connection:
                if migrated_first and not self._migrated:
                    await self._migrate(connection)
                return await work(connection)
        except StoreRejected:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"{self._where}: {_describe(exc)}") from None
        except asyncpg.PostgresError as exc:
            raise StoreRejected(f"{self._where}: {_describe(exc)}") from None

    async def _get_pool(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                # min_size=0: creating the pool connects nothing; each acquire connects on demand.
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=0,
                    max_size=self._max_connections,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                )
            return self._pool

    async def _migrate(self, connection: Any) -> None:
        async with connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", _MIGRATION_LOCK
            )
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in await connection.fetch("SELECT version FROM schema_version")}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.postgres:
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)", migration.version
                )
        self._migrated = True

    async def _write(self, connection: Any, rows: Sequence[Row]) -> None:
        requests, attempts = split(rows)
        async with connection.transaction():
            if requests:
                await connection.executemany(
                    request_insert("numeric"), [request_values(r) for r in requests]
                )
            if attempts:
                await connection.executemany(
                    attempt_upsert("numeric"), [attempt_values(a) for a in attempts]
                )

    async def _get(self, connection: Any, request_id: str) -> RequestRow | None:
        found = await connection.fetchrow(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id = $1",
            request_id,
        )
        if found is None:
            return None
        attempts = await connection.fetch(
            f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts WHERE request_id = $1 ORDER BY seq",
            request_id,
        )
        return row_from_values(tuple(found)).with_attempts(
            [attempt_from_values(tuple(a)) for a in attempts]
        )

    async def _window(self, connection: Any, since: float) -> Window:
        requests = await connection.fetch(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE started_at >= $1 "
            "ORDER BY started_at",
            since,
        )
        columns = ", ".join(f"a.{c}" for c in ATTEMPT_COLUMNS)
        attempts = await connection.fetch(
            f"SELECT {columns} FROM attempts a JOIN requests r ON r.request_id = a.request_id "
            "WHERE r.started_at >= $1 ORDER BY a.request_id, a.seq",
            since,
        )
        return Window(
            tuple(row_from_values(tuple(r)) for r in requests),
            tuple(attempt_from_values(tuple(a)) for a in attempts),
        )

    @property
    def _where(self) -> str:
        return f"postgresql store {describe_url(self._url)}"

    def __repr__(self) -> str:
        return f"<PostgresStore {describe_url(self._url)!r}>"


def _describe(exc: BaseException) -> str:
    # asyncpg's messages name the server and the statement, never the password; an OSError's
    # text is the socket's. The type says what happened when the text is empty.
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
