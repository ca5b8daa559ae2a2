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
from failover.observe.schema import MIGRATIONS, statements
from failover.observe.store import (
    StoreRejected,
    StoreUnavailable,
    Window,
    batch_values,
    describe_url,
    request_from_values,
    window_from_values,
)

__all__ = ["PostgresStore"]

T = TypeVar("T")

# Any fixed pair identifies our lock; the schema's hash keeps separate schemas independent.
_MIGRATION_LOCK = 0x6661696C  # "fail"
_SQL = statements("numeric")

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
        requests, attempts = batch_values(rows)
        async with connection.transaction():
            if requests:
                await connection.executemany(_SQL.insert_request, requests)
            if attempts:
                await connection.executemany(_SQL.upsert_attempt, attempts)

    async def _get(self, connection: Any, request_id: str) -> RequestRow | None:
        found = await connection.fetchrow(_SQL.request, request_id)
        if found is None:
            return None
        return request_from_values(found, await connection.fetch(_SQL.attempts, request_id))

    async def _window(self, connection: Any, since: float) -> Window:
        requests = await connection.fetch(_SQL.requests_since, since)
        attempts = await connection.fetch(_SQL.attempts_since, since)
        return window_from_values(requests, attempts)

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
