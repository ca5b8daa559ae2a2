"""The SQLite request log: stdlib ``sqlite3`` on one thread of its own, never on the event loop.

Every call goes to a single dedicated thread that owns the connection (``sqlite3`` connections
belong to the thread that made them), so the event loop only awaits a future. The database runs
in WAL mode with a busy timeout: ``failover stats`` can read it while a gateway writes, and
several worker processes can share one file.

>>> SQLiteStore("failover.db")
<SQLiteStore 'failover.db'>
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from failover.observe.records import RequestRow, Row
from failover.observe.schema import MIGRATIONS, attempt_upsert, request_insert, statements
from failover.observe.store import (
    StoreRejected,
    StoreUnavailable,
    Window,
    batch_values,
    request_from_values,
    window_from_values,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 5000
_SQL = statements("qmark")


class SQLiteStore:
    """A request log in the SQLite file ``path`` (``:memory:`` for a private, transient one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None  # touched only on the thread
        self._migrated = False

    async def migrate(self) -> None:
        await self._call(self._migrate)

    async def write(self, rows: Sequence[Row]) -> None:
        await self._call(lambda: self._write(rows))

    async def get(self, request_id: str) -> RequestRow | None:
        return await self._call(lambda: self._get(request_id))

    async def window(self, since: float) -> Window:
        return await self._call(lambda: self._window(since))

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    # -- on the event loop: hand the work to the thread -------------------------------------

    async def _call(self, work: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="failover-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._translated(work))

    # -- on the store's thread ----------------------------------------------------------------

    def _translated(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except sqlite3.OperationalError as exc:
            # Locked, busy, unreadable, disk full: the database may come back.
            raise StoreUnavailable(f"sqlite store {self.path!r}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreRejected(f"sqlite store {self.path!r}: {exc}") from None
        except OSError as exc:  # its directory could not be made
            raise StoreUnavailable(f"sqlite store {self.path!r}: {exc.strerror}") from None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if self.path != ":memory:":
                _switch_to_wal(connection)
                connection.execute("PRAGMA synchronous = NORMAL")
            self._connection = connection
        return self._connection

    def _migrate(self) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then skip
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_version")}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.sqlite:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (migration.version, time.time()),
                )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self._migrated = True

    def _write(self, rows: Sequence[Row]) -> None:
        if not self._migrated:
            self._migrate()
        requests, attempts = batch_values(rows)
        db = self._db()
        db.execute("BEGIN")
        try:
            _write_all(db, request_insert, requests)
            _write_all(db, attempt_upsert, attempts)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def _get(self, request_id: str) -> RequestRow | None:
        if not self._migrated:
            self._migrate()
        db = self._db()
        found = db.execute(_SQL.request, (request_id,)).fetchone()
        if found is None:
            return None
        return request_from_values(found, db.execute(_SQL.attempts, (request_id,)).fetchall())

    def _window(self, since: float) -> Window:
        if not self._migrated:
            self._migrate()
        db = self._db()
        requests = db.execute(_SQL.requests_since, (since,)).fetchall()
        attempts = db.execute(_SQL.attempts_since, (since,)).fetchall()
        return window_from_values(requests, attempts)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"


_CHUNKS = (64, 16, 4, 1)
"""Rows per statement, largest first: a batch goes in a few statements of a few shapes."""


@functools.cache
def _statement(build: Callable[[str, int], str], rows: int) -> str:
    return build("qmark", rows)


def _write_all(
    db: sqlite3.Connection, build: Callable[[str, int], str], values: Sequence[tuple[Any, ...]]
) -> None:
    """Write ``values`` (rows, in order) with statements of many rows each.

    One statement per row would hand the interpreter's lock back and forth with the event
    loop's thread for every row: this lets the loop run undisturbed while SQLite works.
    """
    start = 0
    for size in _CHUNKS:
        statement = _statement(build, size)
        while len(values) - start >= size:
            db.execute(statement, list(chain.from_iterable(values[start : start + size])))
            start += size


def _rollback(db: sqlite3.Connection) -> None:
    # The error that got us here is the one worth raising, not a failed rollback.
    with contextlib.suppress(sqlite3.Error):
        db.execute("ROLLBACK")


def _switch_to_wal(connection: sqlite3.Connection, attempts: int = 100) -> None:
    """Turn WAL on; retried, because SQLite answers "database is locked" at once, without its
    busy handler, when another connection opens the same file at the same moment (seen with
    three stores migrating together). Runs on the store's own thread, so it may sleep."""
    for attempt in range(attempts):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01)
