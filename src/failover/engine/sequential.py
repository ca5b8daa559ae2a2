"""Sequential routes (rule 2): one attempt at a time, retries before moving on.

Each target in turn: its attempt runs; a failure is retried on the same deployment while its class
allows, ``max_retries`` is not used up, the retry budget allows, and the backoff wait ends before
the deadline; otherwise the next target runs at once. A ``bad_request`` ends the request (rule 9).
The deadline bounds it all (rule 5): each attempt's timer ends at the deadline if that comes
before its own timeout, and no wait ends past it.

Only one attempt ever runs, so it runs inline on the request's own task: no task is created, and
one timer per attempt serves both its timeout and the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

from failover.engine.attempt import Attempt, Work, admit
from failover.engine.retrying import retry_wait
from failover.engine.route import Target
from failover.engine.run import RequestRun
from failover.errors import DeadlineExceeded, ErrorClass, UpstreamError

__all__ = ["run_sequential"]

T = TypeVar("T")


async def run_sequential(
    run: RequestRun, targets: Sequence[Target], work: Work[T]
) -> Attempt[T] | None:
    """The winning attempt, or None (``run`` then says why: errors, deadline, bad request)."""
    retry_config = run.route.config.retry
    last = len(targets) - 1
    for index, target in enumerate(targets):
        retries = 0
        while True:
            if run.loop.time() >= run.deadline_at:
                run.deadline_passed = True
                return None
            attempt: Attempt[T] | None = await admit(run, target, retry=retries, hedge=False)
            if attempt is None:
                break  # health no longer admits it: the next target
            try:
                await attempt.execute(work, deadline_at=run.deadline_at)
            except DeadlineExceeded:
                run.deadline_passed = True
                return None
            except UpstreamError as error:
                if error.error_class is ErrorClass.BAD_REQUEST:
                    run.note_bad_request(error, target)
                    return None
                now = run.loop.time()
                wait = retry_wait(
                    error,
                    retries_done=retries,
                    max_retries=target.max_retries,
                    other_target_available=index < last,
                    retry=retry_config,
                    rng=run.rng,
                    now=now,
                    deadline_at=run.deadline_at,
                )
                if wait is None or not run.route.budget.allows_extra(now):
                    break
                await asyncio.sleep(wait)  # it ends before the deadline: retry_wait saw to it
                retries += 1
                continue
            return attempt
    return None
