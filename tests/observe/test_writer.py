"""The background writer: batches, the pending view, a full buffer, a store that is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from failover.observe.records import AttemptRow, RequestRow, Row
from failover.observe.sqlite_store import SQLiteStore
from failover.observe.store import StoreRejected, Window
from failover.observe.stores import open_store
from failover.observe.writer import RecordWriter, merge_rows

from .conftest import closed_port, poll_until


def _request(request_id: str) -> RequestRow:
    attempts = (AttemptRow(request_id, 0, "main", 0.0, None, "running"),)
    return RequestRow(request_id, 1000.0, "intent", "success", 10.0, attempts=attempts)


class RefusingStore:
    """A store double that refuses every batch (as a database rejecting the data would)."""

    def __init__(self) -> None:
        self.batches = 0

    async def migrate(self) -> None:
        return None

    async def write(self, rows: Sequence[Row]) -> None:
        self.batches += 1
        raise StoreRejected("refused")

    async def get(self, request_id: str) -> RequestRow | None:
        return None

    async def window(self, since: float) -> Window:
        return Window((), ())

    async def aclose(self) -> None:
        return None


def test_merge_rows_follows_the_store_rules() -> None:
    """Pending rows merge like the store applies them: first request wins, running replaced."""
    stored = _request("req_1")
    done = AttemptRow("req_1", 0, "main", 0.0, 3000.0, "lost_completed")
    merged = merge_rows(stored, [done, _request("req_1")])
    assert merged is not None
    assert merged.attempts == (done,)
    assert merge_rows(None, [done]) is None
    assert merge_rows(None, [_request("req_2")]) == _request("req_2")


async def test_rows_are_written_in_batches(tmp_path: Path) -> None:
    """Rows submitted are written by the background task; the pending view empties."""
    store = SQLiteStore(str(tmp_path / "log.db"))
    writer = RecordWriter(store, batch_size=10, interval=0.05)
    await writer.start()
    for n in range(25):
        assert writer.submit(_request(f"req_{n}"))
    assert writer.pending("req_3") == [_request("req_3")]
    for _ in range(200):
        if writer.written == 25:
            break
        await asyncio.sleep(0.02)
    assert writer.written == 25
    assert len(writer) == 0
    assert writer.pending("req_3") == []
    reader = SQLiteStore(str(tmp_path / "log.db"))
    try:
        assert await reader.get("req_24") == _request("req_24")
    finally:
        await reader.aclose()
        await writer.aclose()


async def test_full_buffer_drops_counts_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past its capacity the buffer drops rows, counts each, and logs one line for them all."""
    dropped: list[int] = []
    writer = RecordWriter(
        SQLiteStore(str(tmp_path / "log.db")), capacity=3, on_dropped=dropped.append
    )
    with caplog.at_level(logging.WARNING, logger="failover.observe.writer"):
        accepted = [writer.submit(_request(f"req_{n}")) for n in range(10)]
    assert accepted == [True] * 3 + [False] * 7
    assert writer.dropped == 7
    assert sum(dropped) == 7
    assert len([r for r in caplog.records if "dropping records" in r.message]) == 1
    await writer.aclose()  # writes the three it kept
    reader = SQLiteStore(str(tmp_path / "log.db"))
    try:
        assert (await reader.get("req_2")) is not None
        assert (await reader.get("req_3")) is None
    finally:
        await reader.aclose()


async def test_dead_postgres_never_delays_and_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With PostgreSQL down, submit stays instant, the outage is logged once, rows stay readable."""
    store = open_store(f"postgresql://127.0.0.1:{closed_port()}/test")
    assert store is not None
    failures: list[None] = []
    writer = RecordWriter(
        store, interval=0.01, max_pause=0.05, on_failure=lambda: failures.append(None)
    )
    with caplog.at_level(logging.WARNING, logger="failover.observe.writer"):
        await writer.start()
        slowest = 0.0
        for n in range(50):
            started = time.perf_counter()
            writer.submit(_request(f"req_{n}"))
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0.005)
        for _ in range(200):
            if len(failures) >= 3:
                break
            await asyncio.sleep(0.01)
        assert merge_rows(None, writer.pending("req_49")) == _request("req_49")
        await writer.aclose(grace=0.2)
    assert slowest < 0.05  # generous: a submit is a deque append
    assert len(failures) >= 3
    failed_lines = [r for r in caplog.records if "failed" in r.message]
    assert len(failed_lines) == 1
    assert writer.dropped == 50  # nothing could be written before shutdown: all counted


async def test_refused_batch_is_dropped_and_counted() -> None:
    """A batch the store refuses is dropped (not retried forever) and counted."""
    store = RefusingStore()
    writer = RecordWriter(store, interval=0.01)
    await writer.start()
    writer.submit(_request("req_1"))
    writer.submit(_request("req_2"))
    await poll_until(lambda: writer.dropped == 2)
    await writer.aclose()
    assert writer.dropped == 2
    assert store.batches == 1
    assert writer.failures == 1


class BrokenStore(RefusingStore):
    """A store double with a bug: it raises something that is not a StoreError."""

    async def write(self, rows: Sequence[Row]) -> None:
        self.batches += 1
        raise RuntimeError("bug")


async def test_a_store_bug_drops_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    """A store that fails with a bug loses its batch (counted, logged), the writer goes on."""
    store = BrokenStore()
    writer = RecordWriter(store, interval=0.01)
    await writer.start()
    with caplog.at_level(logging.WARNING, logger="failover.observe.writer"):
        writer.submit(_request("req_1"))
        await poll_until(lambda: writer.dropped == 1)
        writer.submit(_request("req_2"))
        await poll_until(lambda: writer.dropped == 2)
        await writer.aclose()
    assert writer.dropped == 2
    assert store.batches == 2
    assert "RuntimeError" in caplog.text
