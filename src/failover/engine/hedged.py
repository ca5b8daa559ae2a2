"""Hedged routes (rule 3): targets race; the first success wins.

The request starts its first target. When the attempt started last has not answered
``hedge_after`` seconds after it started (with ``auto``: its deployment's recent p95, within the
route's bounds, :mod:`~failover.engine.adaptive`), the next target starts beside it (a *hedge*);
when an
attempt fails, the next target starts at once (a *fallback*). Retries on the same deployment
happen only after every target has started, under rule 2's conditions, each after its backoff
counted from its failure. A ``bad_request`` starts nothing new but cancels nothing (rule 9). At
the deadline everything still running is cancelled (rule 5).

One task per attempt; the request's own task runs the loop below, which sleeps until the next
thing that can happen (an attempt ends, a hedge is due, a retry is due, the deadline) and never
polls. When it returns, :func:`settle` ends every attempt still running (rule 4): those after the
winner in route order are cancelled, those before it are cancelled too unless ``finish_losers``
lets them run on in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from itertools import chain
from typing import Generic, TypeVar

from failover.engine.attempt import Attempt, Work, admit
from failover.engine.events import EventKind
from failover.engine.losers import log_unexpected, wait_all
from failover.engine.retrying import retry_wait
from failover.engine.route import Target
from failover.engine.run import RequestRun
from failover.errors import ErrorClass, UpstreamError

__all__ = ["run_hedged"]

T = TypeVar("T")

# Timers fire within the loop's clock resolution of their time, and sums of floats drift by an
# ulp: a moment counts as reached this close to it (one nanosecond, asyncio's own resolution).
_EPSILON = 1e-9


async def run_hedged(
    run: RequestRun, targets: Sequence[Target], work: Work[T]
) -> Attempt[T] | None:
    """The winning attempt, or None (``run`` then says why: errors, deadline, bad request)."""
    race = _Race(run, targets, work)
    winner: Attempt[T] | None = None
    try:
        winner = await race.decide()
        return winner
    finally:
        await race.settle(winner)


class _Lane:
    """One target's retries within the request."""

    __slots__ = ("ready_at", "retries")

    def __init__(self) -> None:
        self.retries = 0
        self.ready_at: float | None = None  # when its next retry may start, if one is due


class _Race(Generic[T]):
    """One hedged request: its attempts' tasks, the next target, the hedge and retry times."""

    def __init__(self, run: RequestRun, targets: Sequence[Target], work: Work[T]) -> None:
        self.run = run
        self.targets = targets
        self.work = work
        self.tasks: dict[asyncio.Task[None], Attempt[T]] = {}
        self.lanes = {target.name: _Lane() for target in targets}
        self.next = 0  # index in `targets` of the next target to start for the first time
        self.hedge_at: float | None = None
        self.primary: Attempt[T] | None = None
        self.primary_late_at: float | None = None

    @property
    def all_started(self) -> bool:
        return self.next >= len(self.targets)

    @property
    def retries_may_start(self) -> bool:
        """Rule 3: retries wait until every target has started; rule 9: a 400 stops them.

        The one test for retries everywhere: a retry time the loop wakes up for must be one it
        can act on, or it would wake at that same moment again and again.
        """
        return self.all_started and self.run.bad_request is None

    async def decide(self) -> Attempt[T] | None:
        """Run the race until an attempt wins (returned) or none can (None)."""
        run = self.run
        if not await self._start_next(hedge=False):
            return None
        while True:
            ended = self._reap()
            if run.won:
                return self._winner(ended)
            for attempt in ended:
                await self._after_failure(attempt)
            # Starting an attempt awaits health: one that was running may have won meanwhile.
            if run.won:
                return self._winner(ended)
            now = run.loop.time()
            if now >= run.deadline_at - _EPSILON:
                run.deadline_passed = True
                return None
            if self.primary_late_at is not None and now >= self.primary_late_at - _EPSILON:
                self._primary_late()
            if self.hedge_at is not None and now >= self.hedge_at - _EPSILON:
                await self._hedge(now)
            await self._start_due_retries(now)
            if run.won:
                return self._winner(ended)
            if not self.tasks and not self._retry_pending():
                return None
            await self._wait(self._next_moment())

    async def settle(self, winner: Attempt[T] | None) -> None:
        """End every attempt still running; return once none is left but kept losers."""
        run = self.run
        finish = run.route.finish_losers
        won_at = run.t0 + (winner.record.end or 0.0) if winner is not None else 0.0
        waiting: list[asyncio.Task[None]] = []
        for task, attempt in self.tasks.items():
            if task.done():
                log_unexpected(task)
                continue
            if attempt is winner:
                waiting.append(task)  # it won; it is only telling health
                continue
            if (
                winner is not None
                and finish > 0
                and attempt.target.position < winner.target.position
                and run.losers.adopt(task, until=won_at + finish)
            ):
                continue
            task.cancel()
            waiting.append(task)
        self.tasks.clear()
        await wait_all(waiting)
        for task in waiting:
            log_unexpected(task)

    def _winner(self, ended: Sequence[Attempt[T]]) -> Attempt[T]:
        """The attempt that won the run: one reaped in this turn of the loop, or one still
        telling health (a win is claimed before its task ends, and every turn looks for it)."""
        for attempt in chain(ended, self.tasks.values()):
            if attempt.won:
                return attempt
        raise RuntimeError(f"request {self.run.request_id} was won by none of its attempts")

    def _reap(self) -> list[Attempt[T]]:
        """The attempts that ended since last time, in the order they ended.

        An attempt's task ends with an exception only on a bug (an upstream failure is kept on
        the attempt): it is raised here, and the engine answers per rule 8.2.
        """
        ended = [(task, attempt) for task, attempt in self.tasks.items() if task.done()]
        bug: BaseException | None = None
        for task, attempt in ended:
            del self.tasks[task]
            if task.cancelled():
                # Only settle() cancels attempts: something below us raised CancelledError.
                bug = bug or RuntimeError(f"the attempt of {attempt.target.name!r} was cancelled")
            elif (error := task.exception()) is not None:
                bug = bug or error
        if bug is not None:
            raise bug
        ended.sort(key=lambda pair: (pair[1].record.end or 0.0, pair[1].target.position))
        return [attempt for _, attempt in ended]

    async def _after_failure(self, attempt: Attempt[T]) -> None:
        run = self.run
        error = attempt.error
        if error is None:  # it completed after another had won: nothing to do
            return
        if error.error_class is ErrorClass.BAD_REQUEST:
            run.note_bad_request(error, attempt.target)
            return
        now = run.loop.time()
        if run.bad_request is not None or now >= run.deadline_at - _EPSILON:
            return
        lane = self.lanes[attempt.target.name]
        # Retries wait until every target has started (then no other target is available).
        wait = retry_wait(
            error,
            retries_done=lane.retries,
            max_retries=attempt.target.max_retries,
            other_target_available=False,
            retry=run.route.config.retry,
            rng=run.rng,
            now=now,
            deadline_at=run.deadline_at,
        )
        # The budget is asked now (waiting for a retry it already refuses would only delay the
        # answer) and again when the retry is due (other requests may have spent it meanwhile).
        if wait is not None and run.route.budget.allows_extra(now):
            lane.ready_at = now + wait
        if not self.all_started:
            await self._start_next(hedge=False)

    def _primary_late(self) -> None:
        self.primary_late_at = None
        primary = self.primary
        if primary is not None and primary.running:
            self.run.emit(EventKind.PRIMARY_TIMEOUT, deployment=primary.target.name)

    async def _hedge(self, now: float) -> None:
        self.hedge_at = None
        run = self.run
        if run.bad_request is not None or self.all_started or not self.tasks:
            return
        if not run.route.budget.allows_extra(now):
            return  # past the budget: no hedge; a failure will still start the next target
        await self._start_next(hedge=True)

    async def _start_due_retries(self, now: float) -> None:
        run = self.run
        if not self.retries_may_start:
            return
        for target in self.targets:
            lane = self.lanes[target.name]
            if lane.ready_at is None or lane.ready_at > now + _EPSILON:
                continue
            lane.ready_at = None
            if not run.route.budget.allows_extra(now):
                continue
            attempt: Attempt[T] | None = await admit(
                run, target, retry=lane.retries + 1, hedge=False
            )
            if attempt is not None:
                lane.retries += 1
                self._launch(attempt)

    async def _start_next(self, *, hedge: bool) -> bool:
        """Start the next target health admits; False when none is left."""
        while not self.all_started:
            target = self.targets[self.next]
            self.next += 1
            attempt: Attempt[T] | None = await admit(self.run, target, retry=0, hedge=hedge)
            if attempt is None:
                continue
            if hedge:
                self.run.emit(
                    EventKind.HEDGE_STARTED, deployment=target.name, attempt=attempt.record
                )
            self._launch(attempt)
            return True
        return False

    def _launch(self, attempt: Attempt[T]) -> None:
        first = self.primary is None
        # The delay is read as the attempt starts (before its own task counts it as running).
        delay = (
            self.run.hedge_delay(attempt.target, attempt.started)
            if first or not self.all_started
            else None
        )
        task = asyncio.get_running_loop().create_task(_perform(attempt, self.work))
        self.tasks[task] = attempt
        if first:
            self.primary = attempt
            if delay is not None:
                # primary_timeout: the observe layer alerts on it always for a fixed delay, and
                # for `auto` only when the route hedges far more than the 5% it is meant to.
                self.primary_late_at = attempt.started + delay
        if delay is not None and not self.all_started:
            self.hedge_at = attempt.started + delay
        else:
            self.hedge_at = None

    def _retry_pending(self) -> bool:
        return self.retries_may_start and any(
            lane.ready_at is not None for lane in self.lanes.values()
        )

    def _next_moment(self) -> float:
        moments = [self.run.deadline_at]
        if self.hedge_at is not None:
            moments.append(self.hedge_at)
        if self.primary_late_at is not None:
            moments.append(self.primary_late_at)
        if self.retries_may_start:
            moments.extend(
                lane.ready_at for lane in self.lanes.values() if lane.ready_at is not None
            )
        return min(moments)

    async def _wait(self, until: float) -> None:
        timeout = max(0.0, until - self.run.loop.time())
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(timeout)


async def _perform(attempt: Attempt[T], work: Work[T]) -> None:
    """An attempt's task: its outcome is kept on the attempt, so only a bug raises."""
    with contextlib.suppress(UpstreamError):
        await attempt.execute(work)
