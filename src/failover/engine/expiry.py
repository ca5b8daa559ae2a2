"""A time limit on the running task: what ``asyncio.timeout_at`` does, at half its cost.

Every attempt and every chunk of a committed stream runs under one, so it is on the hot path:
``asyncio.timeout_at`` builds an object with a state machine and two coroutines (its async
context manager) for each, about 4 µs here; :class:`Expiry` is one timer handle and two calls.

::

    expiry = Expiry(loop_time_limit)
    try:
        try:
            value = await call()
        finally:
            expired = expiry.stop()
    except asyncio.CancelledError:
        if expired:
            ...  # the limit ended the call: the caller's timeout
        raise

As with ``asyncio.timeout_at``, a cancellation that came from elsewhere as well (the caller was
cancelled too) is never taken for the limit: ``stop()`` then says False and it propagates.
"""

from __future__ import annotations

import asyncio

__all__ = ["Expiry"]


class Expiry:
    """Cancels the current task at loop time ``when``, unless :meth:`stop` comes first."""

    __slots__ = ("_cancelling", "_handle", "_task", "fired")

    def __init__(self, when: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Expiry must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.fired = False
        self._handle = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self._task.cancel()

    def stop(self) -> bool:
        """Stop the timer; True when it fired and its cancellation is the only one pending,
        i.e. the CancelledError being handled is the limit's (turn it into a timeout)."""
        self._handle.cancel()
        return self.fired and self._task.uncancel() <= self._cancelling

    def __repr__(self) -> str:
        return f"<Expiry {'fired' if self.fired else 'armed'}>"
