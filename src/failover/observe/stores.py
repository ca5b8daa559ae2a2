"""The request log store a URL names: ``sqlite:///PATH``, ``postgresql://...`` or ``none``.

Apart from :mod:`~failover.observe.store` (which both backends build on), so that nothing
imports in a circle.
"""

from __future__ import annotations

from failover.config.sections import SQLITE_URL_PREFIX
from failover.observe.store import RecordStore, describe_url

__all__ = ["open_store"]


def open_store(url: str) -> RecordStore | None:
    """The store ``url`` names (nothing is connected yet), or None for ``none``.

    >>> open_store("sqlite:///:memory:")
    <SQLiteStore ':memory:'>
    """
    if url == "none":
        return None
    # Each backend is imported only when asked for (asyncpg costs the CLI time to import).
    if url.startswith(SQLITE_URL_PREFIX):
        from failover.observe.sqlite_store import SQLiteStore

        return SQLiteStore(url.removeprefix(SQLITE_URL_PREFIX))
    if url.startswith(("postgresql://", "postgres://")):
        from failover.observe.postgres_store import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported store url {describe_url(url)!r}")
