"""Where the request log is kept: the :class:`RecordStore` protocol and :func:`open_store`.

``store.url`` picks the backend: ``sqlite:///PATH`` (:mod:`~failover.observe.sqlite_store`,
stdlib ``sqlite3`` on a thread of its own), ``postgresql://...``
(:mod:`~failover.observe.postgres_store`, an ``asyncpg`` pool) or ``none`` (no log). Stores are
written by the :class:`~failover.observe.writer.RecordWriter` in batches, off the request path.

Every failure of a backend leaves it as a :class:`StoreError` (the driver's own exceptions never
escape, and never a URL, which may hold a password): :class:`StoreUnavailable` when the database
could not be reached or answered too late (worth retrying), :class:`StoreRejected` when it refused
the data (retrying would not help).

:func:`~failover.observe.stores.open_store` opens the store a URL names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

from failover.config.sections import SQLITE_URL_PREFIX
from failover.errors import StoreError, StoreRejected, StoreUnavailable
from failover.observe.records import AttemptRow, RequestRow, Row
from failover.observe.schema import ATTEMPT_COLUMNS, REQUEST_COLUMNS

__all__ = [
    "RecordStore",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "Window",
    "attempt_from_values",
    "attempt_values",
    "batch_values",
    "describe_url",
    "request_from_values",
    "request_values",
    "row_from_values",
    "window_from_values",
]


@dataclass(frozen=True, slots=True)
class Window:
    """The requests that arrived since a moment, and their attempts (for ``failover stats``)."""

    requests: tuple[RequestRow, ...]
    attempts: tuple[AttemptRow, ...]


class RecordStore(Protocol):
    """A request log backend."""

    async def migrate(self) -> None:
        """Create or update the tables (idempotent; safe from several processes at once)."""
        ...

    async def write(self, rows: Sequence[Row]) -> None:
        """Write a batch in one transaction: requests with their attempts, then attempt updates."""
        ...

    async def get(self, request_id: str) -> RequestRow | None:
        """One request with its attempts in order, or None."""
        ...

    async def window(self, since: float) -> Window:
        """Every request that arrived at or after ``since`` (epoch seconds), with its attempts."""
        ...

    async def aclose(self) -> None: ...


def describe_url(url: str) -> str:
    """The URL without credentials, query or path details: safe for a log line.

    >>> describe_url("postgresql://app:s3cret@db.internal:5432/logs?sslmode=require")
    'postgresql://db.internal:5432'
    >>> describe_url("sqlite:///var/lib/failover.db")
    'sqlite:///var/lib/failover.db'
    """
    if url.startswith(SQLITE_URL_PREFIX) or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split("?", 1)[0]
    return f"{scheme}://{host}"


request_values: Callable[[RequestRow], tuple[Any, ...]] = attrgetter(*REQUEST_COLUMNS)
"""A request row as the values of :data:`~failover.observe.schema.REQUEST_COLUMNS`."""

attempt_values: Callable[[AttemptRow], tuple[Any, ...]] = attrgetter(*ATTEMPT_COLUMNS)
"""An attempt row as the values of :data:`~failover.observe.schema.ATTEMPT_COLUMNS`."""


_BOOLEAN_REQUEST = ("degraded", "stream", "fallback")
_BOOLEAN_ATTEMPT = ("hedge", "probe")


def row_from_values(values: Sequence[Any]) -> RequestRow:
    """A request row read back (without attempts); SQLite's 0/1 become booleans."""
    data = dict(zip(REQUEST_COLUMNS, values, strict=True))
    for name in _BOOLEAN_REQUEST:
        data[name] = bool(data[name])
    return RequestRow(**data)


def attempt_from_values(values: Sequence[Any]) -> AttemptRow:
    """An attempt row read back; SQLite's 0/1 become booleans."""
    data = dict(zip(ATTEMPT_COLUMNS, values, strict=True))
    for name in _BOOLEAN_ATTEMPT:
        data[name] = bool(data[name])
    return AttemptRow(**data)


def split(rows: Sequence[Row]) -> tuple[list[RequestRow], list[AttemptRow]]:
    """A batch as the requests to insert and the attempt rows to write after them, in order."""
    requests = [row for row in rows if isinstance(row, RequestRow)]
    attempts = [attempt for request in requests for attempt in request.attempts]
    attempts += [row for row in rows if isinstance(row, AttemptRow)]
    return requests, attempts


def batch_values(rows: Sequence[Row]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A batch as the values of its request inserts and of its attempt writes, in order."""
    requests, attempts = split(rows)
    return [request_values(r) for r in requests], [attempt_values(a) for a in attempts]


def request_from_values(request: Sequence[Any], attempts: Iterable[Sequence[Any]]) -> RequestRow:
    """A request read back with its attempts (rows of the columns, as a driver returns them)."""
    return row_from_values(request).with_attempts([attempt_from_values(a) for a in attempts])


def window_from_values(
    requests: Iterable[Sequence[Any]], attempts: Iterable[Sequence[Any]]
) -> Window:
    """A window read back (rows of the columns, as a driver returns them)."""
    return Window(
        tuple(row_from_values(r) for r in requests),
        tuple(attempt_from_values(a) for a in attempts),
    )
