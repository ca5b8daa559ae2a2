"""Ending what did not win: cancel and wait for it, or let it run on in the background (rule 4).

No task the engine creates is ever left behind. Within a request, attempts that lost or were cut
by the deadline are cancelled *and awaited* before the answer (:func:`wait_all`). The only tasks
that outlive a request are losers kept on purpose with ``finish_losers``: a :class:`LoserPool`
holds them, cuts each at its time limit, bounds how many there are, and ends them all on
``aclose()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

__all__ = ["LoserPool", "log_unexpected", "wait_all"]

logger = logging.getLogger(__name__)


async def wait_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Wait until every task has ended, even if we are cancelled meanwhile.

    A cancellation that arrives while waiting is passed on to the tasks still running, and raised
    once they have all ended: a task is never left pending behind our back.
    """
    pending = set(tasks)
    cancelled = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
            for task in pending:
                task.cancel()
    if cancelled:
        raise asyncio.CancelledError


def log_unexpected(task: asyncio.Task[None]) -> None:
    """Retrieve an ended task's exception, logging it: only a bug gets here."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("an attempt ended with an unexpected error", exc_info=error)


class LoserPool:
    """Losing attempts running on in the background after their request was answered.

    Each is cancelled at the time it was adopted with (``finish_losers`` seconds after the win;
    its own ``timeout`` ends it earlier from inside). Past ``limit`` running losers, or once the
    pool is closed, :meth:`adopt` refuses and the caller cancels the attempt instead.

    >>> LoserPool(limit=10)
    <LoserPool running=0 limit=10>
    """

    __slots__ = ("_closed", "_limit", "_tasks")

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._tasks: dict[asyncio.Task[None], asyncio.TimerHandle] = {}
        self._closed = False

    def adopt(self, task: asyncio.Task[None], *, until: float) -> bool:
        """Keep ``task`` running until the loop time ``until``; False when the pool is full."""
        if self._closed or len(self._tasks) >= self._limit:
            return False
        cut = asyncio.get_running_loop().call_at(until, task.cancel)
        self._tasks[task] = cut
        task.add_done_callback(self._ended)
        return True

    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The losers still running."""
        return tuple(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel every loser still running and wait for them; adopt nothing from now on."""
        self._closed = True
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        await wait_all(tasks)

    def _ended(self, task: asyncio.Task[None]) -> None:
        cut = self._tasks.pop(task, None)
        if cut is not None:
            cut.cancel()
        log_unexpected(task)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<LoserPool running={len(self._tasks)} limit={self._limit}{state}>"
