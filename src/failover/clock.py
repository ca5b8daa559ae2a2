"""Time, injected: the engine and health code never read the wall clock themselves.

Two ways, one per kind of code:

- The engine (:mod:`failover.engine`) waits: timeouts, hedge delays, backoffs, deadlines. Its
  time is the running event loop's (``loop.time()``, ``loop.call_at``, ``asyncio.sleep``), and
  it takes no clock. Its tests run it on a :class:`VirtualTimeLoop`, an event loop whose time
  jumps straight to the next timer whenever nothing is ready to run (trio's autojump clock):
  thousands of virtual seconds in milliseconds, deterministically, every timer exactly on time.
  It is meant for coroutines that wait only on timers and each other, not on real sockets.
- Code that only reads time to decide (health: breakers, cooldowns, outcome windows, and the
  Redis backend; the inbound limiters; alert windows and dedup) takes a :class:`Clock`, or its
  ``now``: ``now()`` in seconds on a monotonic scale, and ``sleep()``. :class:`LoopClock` is the
  production one, the running loop's own time, so that it agrees with the engine's;
  :class:`ManualClock` is for the pure state machines in tests: time moves only on ``advance()``.

A :class:`ManualClock` cannot drive code that waits on loop timers (its ``sleep`` returns at once
and the loop's timers never see its time): that is why the engine has no clock parameter.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["Clock", "LoopClock", "ManualClock", "VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class Clock(Protocol):
    """A monotonic clock in seconds, and a way to wait on it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's clock (``loop.time()``) and ``asyncio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "<LoopClock>"


class ManualClock:
    """A clock that moves only when told to; ``sleep`` records the wait and moves time at once.

    >>> clock = ManualClock()
    >>> clock.advance(30)
    >>> clock.now()
    30.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:g}>"


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, instead of blocking until the next timer, moves the loop's time there."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None or self.loop is None:
            # No timer at all: only a wake-up from outside (another thread) can help.
            return super().select(timeout)
        self.loop.jump(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time that jumps to the next timer when idle."""

    def __init__(self, start: float = 0.0) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = float(start)

    def time(self) -> float:
        return self._virtual_now

    def jump(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`.

    >>> async def nap() -> float:
    ...     await asyncio.sleep(3600)
    ...     return asyncio.get_running_loop().time()
    >>> run_virtual(nap())
    3600.0
    """
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
