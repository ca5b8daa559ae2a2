"""The store contract, run on SQLite (tmp_path) and the real PostgreSQL (a schema per test)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from failover.observe.records import AttemptRow, RequestRow
from failover.observe.store import RecordStore, StoreUnavailable
from failover.observe.stores import open_store

from .conftest import POSTGRES_BASE, closed_port


def _request(request_id: str, *, at: float = 1000.0, running: bool = True) -> RequestRow:
    attempts = (
        AttemptRow(
            request_id,
            0,
            "main",
            0.0,
            None if running else 3000.0,
            "running" if running else "lost_completed",
        ),
        AttemptRow(request_id, 1, "fallback", 200.0, 500.0, "success", hedge=True),
    )
    return RequestRow(
        request_id=request_id,
        started_at=at,
        route="intent",
        outcome="success",
        latency_ms=510.0,
        client_request_id="client-1",
        client_key_id="key_abc",
        deployment="fallback",
        fallback=True,
        prompt_tokens=3,
        completion_tokens=8,
        cost_usd=0.00019,
        attempts=attempts,
    )


def _store(url: str) -> RecordStore:
    store = open_store(url)
    assert store is not None
    return store


async def test_write_and_read_back(store_url: str) -> None:
    """A request written with its attempts reads back equal, attempts in order."""
    store = _store(store_url)
    try:
        await store.write([_request("req_1")])
        row = await store.get("req_1")
    finally:
        await store.aclose()
    assert row == _request("req_1")
    assert await _after_close(store_url, "req_unknown") is None


async def _after_close(url: str, request_id: str) -> RequestRow | None:
    store = _store(url)
    try:
        return await store.get(request_id)
    finally:
        await store.aclose()


async def test_loser_update_replaces_running_only(store_url: str) -> None:
    """A loser's final row replaces its running snapshot; a stale snapshot never comes back."""
    store = _store(store_url)
    try:
        await store.write([_request("req_1")])
        final = AttemptRow("req_1", 0, "main", 0.0, 3000.0, "lost_completed")
        await store.write([final])
        await store.write([_request("req_1")])  # the same request again: nothing changes
        row = await store.get("req_1")
    finally:
        await store.aclose()
    assert row is not None
    assert [(a.deployment, a.outcome, a.end_ms) for a in row.attempts] == [
        ("main", "lost_completed", 3000.0),
        ("fallback", "success", 500.0),
    ]


async def test_one_batch_applies_requests_before_updates(store_url: str) -> None:
    """In one batch, an attempt update that follows its request is applied after it."""
    store = _store(store_url)
    try:
        final = AttemptRow("req_1", 0, "main", 0.0, 2900.0, "lost_failed", "timeout")
        await store.write([_request("req_1"), final])
        row = await store.get("req_1")
    finally:
        await store.aclose()
    assert row is not None
    assert row.attempts[0].outcome == "lost_failed"
    assert row.attempts[0].error_class == "timeout"


async def test_window_keeps_recent_requests(store_url: str) -> None:
    """`window(since)` returns the requests that arrived since then, with their attempts."""
    store = _store(store_url)
    try:
        await store.write([_request("old", at=100.0), _request("new", at=200.0)])
        window = await store.window(150.0)
    finally:
        await store.aclose()
    assert [r.request_id for r in window.requests] == ["new"]
    assert [(a.request_id, a.seq) for a in window.attempts] == [("new", 0), ("new", 1)]


async def test_migrations_are_idempotent_and_concurrent(store_url: str) -> None:
    """Migrating again, or from several stores at once, applies each version once."""
    stores = [_store(store_url) for _ in range(3)]
    try:
        await asyncio.gather(*(store.migrate() for store in stores))
        await stores[0].migrate()
        await stores[0].write([_request("req_1")])
    finally:
        for store in stores:
            await store.aclose()
    assert await _versions(store_url) == [1]


async def _versions(url: str) -> list[int]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return [v for (v,) in db.execute("SELECT version FROM schema_version")]
    connection = await asyncpg.connect(url)
    try:
        return [r[0] for r in await connection.fetch("SELECT version FROM schema_version")]
    finally:
        await connection.close()


async def test_postgres_down_is_unavailable_without_url_secrets() -> None:
    """A closed port fails fast as StoreUnavailable, naming the host but not the password."""
    store = _store(f"postgresql://app:pa55word@127.0.0.1:{closed_port()}/test")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.write([_request("req_1")])
    finally:
        await store.aclose()
    assert "127.0.0.1" in str(caught.value)
    assert "pa55word" not in str(caught.value)
    assert "pa55word" not in repr(store)


async def test_sqlite_unwritable_path_is_unavailable(tmp_path: Path) -> None:
    """A SQLite file that cannot be opened fails as StoreUnavailable, not sqlite3's error."""
    (tmp_path / "dir.db").mkdir()
    store = _store(f"sqlite:///{tmp_path / 'dir.db'}")
    try:
        with pytest.raises(StoreUnavailable):
            await store.write([_request("req_1")])
    finally:
        await store.aclose()


def test_postgres_base_is_the_test_database() -> None:
    """The fixtures use the `test` database the brief names."""
    assert POSTGRES_BASE.endswith("/test")
