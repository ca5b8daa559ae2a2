"""Clients that leave: a request is cancelled when its client disconnects (rule 6).

A watcher waits on ``receive()`` beside the request and cancels the request's task when it
reports ``http.disconnect``; the engine then cancels every attempt and closes their upstream
connections. The watcher starts 50 to 100 ms into the request, from one timer shared by all the
requests of a handler, so that fast answers pay for neither a task nor a timer; a client that
left is noticed within that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from failover.server.exchange import Receive

__all__ = ["DisconnectWatch", "Watches"]

WATCH_AFTER = 0.05
"""The period of the disconnect watches: a client that leaves is noticed within two."""


class Watches:
    """Watches for clients leaving, one timer for all the requests of a handler.

    A request registers its :class:`DisconnectWatch` on arrival; every :data:`WATCH_AFTER`
    seconds (one timer, only while requests are registered) the watches registered before the
    previous tick start a task each on ``receive()``. A request answered sooner costs a dict
    insert and a delete: no timer and no task of its own, and a client that left is still seen
    within two ticks.
    """

    __slots__ = ("_handle", "_older", "_younger")

    def __init__(self) -> None:
        self._younger: dict[DisconnectWatch, None] = {}
        self._older: dict[DisconnectWatch, None] = {}
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, receive: Receive, task: asyncio.Task[Any]) -> DisconnectWatch:
        watch = DisconnectWatch(receive, task, self)
        self._younger[watch] = None
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(WATCH_AFTER, self._tick)
        return watch

    def forget(self, watch: DisconnectWatch) -> None:
        if watch in self._younger:
            del self._younger[watch]
        else:
            self._older.pop(watch, None)

    def _tick(self) -> None:
        due, self._older, self._younger = self._older, self._younger, {}
        for watch in due:
            watch.start()
        self._handle = (
            asyncio.get_running_loop().call_later(WATCH_AFTER, self._tick) if self._older else None
        )


class DisconnectWatch:
    """Cancels ``task`` when ``receive()`` says the client disconnected, until stopped.

    Its task on ``receive()`` is started by :class:`Watches` once the request has run between
    one and two :data:`WATCH_AFTER` periods: most answers from a fast upstream come sooner, and a
    client that left earlier is still seen at once then (``receive()`` reports it when asked).
    """

    __slots__ = ("_receive", "_task", "_watcher", "_watches", "fired")

    def __init__(self, receive: Receive, task: asyncio.Task[Any], watches: Watches) -> None:
        self.fired = False
        self._task = task
        self._receive = receive
        self._watches: Watches | None = watches
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watches = None
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass  # more body after the end: nothing to read, go on waiting
        self._watcher = None
        self.fired = True
        self._task.cancel()

    def stop(self) -> None:
        """Stop watching (before the last bytes of the answer go out, and at the end)."""
        watches, self._watches = self._watches, None
        if watches is not None:
            watches.forget(self)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
