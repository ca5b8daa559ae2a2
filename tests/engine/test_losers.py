"""LoserPool and wait_all: no task is ever left behind."""

from __future__ import annotations

import asyncio

import pytest

from failover.clock import run_virtual
from failover.engine import LoserPool
from failover.engine.losers import wait_all

from .fakes import pending_tasks


async def _nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_a_loser_is_cut_at_its_time() -> None:
    """An adopted task still running at ``until`` is cancelled then."""

    async def scenario() -> tuple[bool, float, int]:
        loop = asyncio.get_running_loop()
        pool = LoserPool()
        task = loop.create_task(_nap(100))
        assert pool.adopt(task, until=loop.time() + 3.0)
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled(), loop.time(), len(pool)

    assert run_virtual(scenario()) == (True, 3.0, 0)


def test_a_loser_ending_first_is_forgotten() -> None:
    """A loser that ends by itself leaves the pool; its cut is dropped."""

    async def scenario() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        pool = LoserPool()
        task = loop.create_task(_nap(1))
        pool.adopt(task, until=loop.time() + 3.0)
        await asyncio.sleep(2)
        return len(pool), task.cancelled()

    assert run_virtual(scenario()) == (0, False)


def test_the_pool_refuses_past_its_limit_and_after_close() -> None:
    """adopt() says False when full or closed; the caller cancels instead."""

    async def scenario() -> tuple[list[bool], str, int]:
        loop = asyncio.get_running_loop()
        pool = LoserPool(limit=2)
        tasks = [loop.create_task(_nap(10)) for _ in range(3)]
        kept = [pool.adopt(task, until=loop.time() + 5) for task in tasks]
        tasks[2].cancel()
        text = repr(pool)
        await pool.aclose()
        late = loop.create_task(_nap(10))
        kept.append(pool.adopt(late, until=loop.time() + 5))
        late.cancel()
        await asyncio.gather(*tasks, late, return_exceptions=True)
        return kept, text, len(pending_tasks())

    kept, text, left = run_virtual(scenario())
    assert kept == [True, True, False, False]
    assert text == "<LoserPool running=2 limit=2>"
    assert left == 0


def test_wait_all_finishes_waiting_when_cancelled() -> None:
    """Cancelled while waiting, wait_all cancels what runs, waits for it, then re-raises."""
    ended: list[str] = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1)  # cleanup that takes a while
            ended.append("cleaned up")
            raise

    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        child = loop.create_task(stubborn())
        waiter = loop.create_task(wait_all([child]))
        await asyncio.sleep(2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return ended, len(pending_tasks())

    assert run_virtual(scenario()) == (["cleaned up"], 0)
