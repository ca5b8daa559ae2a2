"""Writing the request log off the hot path: a bounded buffer flushed in batches.

A request only appends its rows to an in-memory buffer (:meth:`RecordWriter.submit`, never an
``await``, never an exception). A background task writes the buffer to the store every
``interval`` seconds, or as soon as ``batch_size`` rows are waiting. A store that is down or slow
never fails or delays a request:

- a batch the store could not take (:class:`~failover.observe.store.StoreUnavailable`) is kept
  and retried with a growing pause, while new rows wait behind it;
- the buffer holds at most ``capacity`` rows; past that, new rows are dropped and counted
  (``on_dropped``, the ``failover_store_dropped_records_total`` metric);
- a batch the store refused (:class:`~failover.observe.store.StoreRejected`) is dropped, counted;
- an outage is logged once when it starts and once when it ends (with what was dropped), never
  once per row.

Rows still in the buffer are readable at once (:meth:`RecordWriter.pending`,
:func:`merge_rows`), so a just-answered request's record is there before its batch is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from failover.observe.records import AttemptRow, RequestRow, Row
from failover.observe.store import RecordStore, StoreError, StoreRejected, describe_url

__all__ = ["RecordWriter", "merge_rows"]

logger = logging.getLogger(__name__)


def merge_rows(stored: RequestRow | None, pending: Iterable[Row]) -> RequestRow | None:
    """``stored`` as it will be once ``pending`` rows (oldest first) are written.

    The same rules as the store's statements: a request is written once (the first copy stays);
    an attempt row replaces one only while that one still says ``running``.
    """
    row = stored
    attempts = {a.seq: a for a in stored.attempts} if stored is not None else {}
    for item in pending:
        if isinstance(item, RequestRow):
            if row is None:
                row = item
            updates: Sequence[AttemptRow] = item.attempts
        else:
            updates = (item,)
        for attempt in updates:
            known = attempts.get(attempt.seq)
            if known is None or known.running:
                attempts[attempt.seq] = attempt
    if row is None:
        return None
    return row.with_attempts([attempts[seq] for seq in sorted(attempts)])


class RecordWriter:
    """Buffers rows and writes them to ``store`` in batches, in the background.

    ``on_dropped(count)`` and ``on_failure()`` feed the metrics; ``name`` says which store in the
    log lines (no credentials). Call :meth:`start` on the event loop, :meth:`aclose` to flush
    (within ``close_timeout``) and stop.
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        name: str = "store",
        capacity: int = 10_000,
        batch_size: int = 500,
        interval: float = 0.1,
        max_pause: float = 5.0,
        write_timeout: float = 15.0,
        on_dropped: Callable[[int], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.name = describe_url(name)
        self.capacity = capacity
        self.batch_size = batch_size
        self.interval = interval
        self.max_pause = max_pause
        self.write_timeout = write_timeout
        self._on_dropped = on_dropped
        self._on_failure = on_failure
        self._queue: deque[Row] = deque()
        self._inflight: Sequence[Row] = ()
        self._wake = asyncio.Event()  # the buffer is no longer empty
        self._full = asyncio.Event()  # a whole batch is waiting
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing_since: float | None = None  # loop time the current outage began
        self._dropping = False  # a drop was already reported for the current episode
        self._dropped_in_episode = 0
        self.dropped = 0
        self.failures = 0
        self.written = 0

    # -- on the request path ----------------------------------------------------------------

    def submit(self, row: Row) -> bool:
        """Queue ``row`` for writing; False (and counted) when the buffer is full or closed."""
        if self._closed or len(self._queue) >= self.capacity:
            self._drop(1, "the request log buffer is full" if not self._closed else "closed")
            return False
        self._queue.append(row)
        if len(self._queue) == 1:
            self._wake.set()
        if len(self._queue) >= self.batch_size:
            self._full.set()
        return True

    def pending(self, request_id: str) -> list[Row]:
        """The rows about ``request_id`` not yet written, oldest first."""
        return [
            row
            for rows in (self._inflight, self._queue)
            for row in rows
            if row.request_id == request_id
        ]

    def __len__(self) -> int:
        return len(self._queue) + len(self._inflight)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background flush task (idempotent)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="failover-request-log"
            )

    async def aclose(self, grace: float = 5.0) -> None:
        """Write what is buffered (for at most ``grace`` seconds), then stop and close."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            async with asyncio.timeout(grace):
                while self._inflight or self._queue:
                    if not await self._flush_once():
                        break
        except TimeoutError:
            pass
        left = len(self)
        if left:
            self._inflight, self._queue = (), deque()
            self._drop(left, "the store did not take them before shutdown")
        await self.store.aclose()

    # -- the background task ----------------------------------------------------------------

    async def _run(self) -> None:
        pause = self.interval
        while True:
            if not self._queue and not self._inflight:
                self._wake.clear()
                await self._wake.wait()  # the first row of the next batch
            if len(self._queue) < self.batch_size and not self._inflight:
                # Let a batch gather for one interval, unless it fills up sooner.
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._full.wait()
            if await self._flush_once():
                pause = self.interval
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_pause)

    async def _flush_once(self) -> bool:
        """Write one batch; False when the store could not take it (it is kept for later)."""
        if not self._inflight:
            count = min(self.batch_size, len(self._queue))
            if not count:
                return True
            self._inflight = [self._queue.popleft() for _ in range(count)]
        batch = self._inflight
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.store.write(batch)
        except StoreRejected as exc:
            self._inflight = ()
            self._failed(exc)
            self._drop(len(batch), "the store refused them")
            return True
        except (StoreError, TimeoutError) as exc:
            self._failed(exc)
            return False
        except Exception as exc:
            # A bug below us (a store must only raise StoreError): never retry it forever.
            logger.error(
                "request log %s: unexpected error writing a batch", self.name, exc_info=exc
            )
            self._inflight = ()
            self._failed(exc)
            self._drop(len(batch), "the store failed unexpectedly")
            return True
        self._inflight = ()
        self.written += len(batch)
        self._recovered()
        return True

    # -- counting and reporting once ------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self._on_failure is not None:
            self._on_failure()
        if self._failing_since is None:
            self._failing_since = asyncio.get_running_loop().time()
            if isinstance(exc, StoreError):
                reason = str(exc)
            elif isinstance(exc, TimeoutError):
                reason = "no answer in time"
            else:
                reason = type(exc).__name__
            logger.warning(
                "request log %s failed (%s); records wait in memory (up to %d) and are "
                "retried; past that they are dropped and counted in "
                "failover_store_dropped_records_total",
                self.name,
                reason,
                self.capacity,
            )

    def _recovered(self) -> None:
        if self._failing_since is None and not self._dropping:
            return
        since = self._failing_since
        elapsed = asyncio.get_running_loop().time() - since if since is not None else 0.0
        logger.warning(
            "request log %s is writing again after %.1fs; %d records were dropped meanwhile",
            self.name,
            elapsed,
            self._dropped_in_episode,
        )
        self._failing_since = None
        self._dropping = False
        self._dropped_in_episode = 0

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        self._dropped_in_episode += count
        if self._on_dropped is not None:
            self._on_dropped(count)
        if not self._dropping:
            self._dropping = True
            logger.warning(
                "request log %s: dropping records (%s); counted in "
                "failover_store_dropped_records_total, reported again when writing resumes",
                self.name,
                why,
            )

    def __repr__(self) -> str:
        state = " failing" if self._failing_since is not None else ""
        return (
            f"<RecordWriter {self.name!r} buffered={len(self)} written={self.written} "
            f"dropped={self.dropped}{state}>"
        )
