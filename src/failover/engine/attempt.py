"""One attempt: one call to one deployment, bounded by its timeout, recorded, reported to health.

What the call does is a :class:`Work`: a completion (:data:`COMPLETE`), or a stream opened up to
its commit (:mod:`failover.engine.streaming`). Whatever ends the attempt, :meth:`Attempt.execute`
completes its record and tells health exactly once (rule 7):

- the upstream answered: success, reported as such;
- the upstream failed, or the deployment's own ``timeout`` passed: reported with its class;
- no connection to the deployment was free in time
  (:class:`~failover.errors.ConnectionUnavailable`): a failed attempt, recorded with its class,
  but the upstream produced nothing, so health is told as for ``cancelled``;
- failover ended it (another attempt won, the deadline, the client left) or a bug interrupted
  it: ``cancelled``, which changes no health and only frees a half-open probe lease.

The first success of a request claims its win (``run.won``, its value in ``run.value``). An attempt
that ends after the win (a loser running on in the background) is recorded as ``lost_completed`` or
``lost_failed``, and a value it produced is discarded (a stream is closed).

Attempts start through :func:`admit`, which asks health and counts the retry budget. This module
depends on :mod:`~failover.engine.run`, never the reverse: the run holds records and the win's
value, not attempts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, Protocol, TypeVar

from failover.engine.events import EventKind
from failover.engine.expiry import Expiry
from failover.engine.route import Target
from failover.engine.run import RequestRun
from failover.errors import (
    ConnectionUnavailable,
    DeadlineExceeded,
    UpstreamError,
    UpstreamTimeout,
)
from failover.health.base import Admission, Report
from failover.providers.base import ChatProvider
from failover.types import AttemptOutcome, AttemptRecord, ChatRequest, Completion

__all__ = ["COMPLETE", "Attempt", "CompleteWork", "Work", "admit"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Work(Protocol[T]):
    """What an attempt does with its deployment's provider."""

    async def open(self, provider: ChatProvider, request: ChatRequest) -> T:
        """The call itself; raises :class:`~failover.errors.UpstreamError` on failure."""
        ...

    async def discard(self, value: T) -> None:
        """Release a value nobody will use (the attempt completed after another won)."""
        ...


class CompleteWork:
    """A non-streaming completion."""

    __slots__ = ()

    async def open(self, provider: ChatProvider, request: ChatRequest) -> Completion:
        return await provider.complete(request)

    async def discard(self, value: Completion) -> None:
        return None


COMPLETE = CompleteWork()


async def admit(run: RequestRun, target: Target, *, retry: int, hedge: bool) -> Attempt[Any] | None:
    """Start an attempt of ``target`` in ``run`` if health admits it now; None when it does not.

    Counts the attempt in the route's retry budget: a retry or a hedge as extra, anything else
    (the first attempt of a target) as first.
    """
    admission = await run.health.admit(target.name, probe=run.probing)
    if admission is None:
        return None
    attempt: Attempt[Any] = Attempt(run, target, admission, retry=retry, hedge=hedge)
    if retry or hedge:
        run.route.budget.record_extra(attempt.started)
    else:
        run.route.budget.record_first(attempt.started)
    return attempt


class Attempt(Generic[T]):
    """One call to one deployment within a request; its record is created (and the
    ``attempt_started`` event emitted) with it.

    After :meth:`execute`: ``won`` and ``value`` for the winner, ``error`` for a failure.
    """

    __slots__ = ("admission", "error", "record", "run", "started", "target", "value", "won")

    def __init__(
        self,
        run: RequestRun,
        target: Target,
        admission: Admission,
        *,
        retry: int,
        hedge: bool,
    ) -> None:
        self.run = run
        self.target = target
        self.admission = admission
        self.started = run.loop.time()
        self.won = False
        self.value: T | None = None
        self.error: UpstreamError | None = None
        self.record = AttemptRecord(
            deployment=target.name,
            start=run.offset(self.started),
            hedge=hedge,
            retry=retry,
            probe=admission.probe,
        )
        run.records.append(self.record)
        run.emit(EventKind.ATTEMPT_STARTED, deployment=target.name, attempt=self.record)

    @property
    def running(self) -> bool:
        return self.record.end is None

    async def execute(self, work: Work[T], *, deadline_at: float | None = None) -> T:
        """Make the call; its value, or the :class:`~failover.errors.UpstreamError` it failed with.

        The call is bounded by the deployment's ``timeout`` (a failure of class ``timeout``) and,
        when ``deadline_at`` is given, by that loop time: reaching it first ends the attempt as
        cancelled and raises :class:`~failover.errors.DeadlineExceeded`. One timer serves both
        (the earlier of the two; the deadline when they coincide).

        A value is returned even when another attempt had already won (``won`` is then false and
        the value has been discarded).
        """
        # While it runs, its elapsed time counts in its deployment's adaptive hedge delay.
        self.run.delays.started(self.target.name, self, self.started)
        limit = self.started + self.target.timeout
        deadline_first = deadline_at is not None and deadline_at <= limit
        expiry = Expiry(limit if deadline_at is None else min(limit, deadline_at))
        expired = False
        try:
            try:
                value = await work.open(self.target.provider, self.run.request)
            finally:
                expired = expiry.stop()
        except UpstreamError as error:
            await self._failed(error)
            raise
        except asyncio.CancelledError as cancelled:
            if not expired:
                # Cancelled by failover (another attempt won, the client left) or the caller.
                await self._abandoned()
                raise
            # The timer's cancellation becomes the context of what is raised instead: its
            # traceback would keep the provider's frames (a parser, a buffer) alive with it.
            cancelled.__traceback__ = None
            if deadline_first:
                await self._abandoned()
                raise DeadlineExceeded(self.run.route.name, self.run.route.deadline) from None
            timeout = UpstreamTimeout(
                f"no answer within the deployment's timeout of {self.target.timeout:g}s",
                deployment=self.target.name,
            )
            await self._failed(timeout)
            raise timeout from None
        except BaseException:
            # A bug below us: no upstream outcome.
            await self._abandoned()
            raise
        await self._succeeded(work, value)
        return value

    async def fail_after_commit(self, error: UpstreamError) -> None:
        """A committed stream failed: record and report the failure the upstream produced."""
        record = self._end()
        if not error.deployment:
            error.deployment = self.target.name
        record.outcome = error.error_class.value
        record.error_class = error.error_class.value
        record.status = error.status
        _forget_frames(error)
        self.run.emit(
            EventKind.STREAM_FAILED, deployment=self.target.name, attempt=record, error=error
        )
        await self._report(self._failure_report(error))

    def stream_ended(self) -> None:
        """A committed stream ended (cleanly or closed by the client): its record ends now."""
        self._end()

    async def _succeeded(self, work: Work[T], value: T) -> None:
        record = self._end()
        run = self.run
        if not run.won:
            run.won = True
            run.value = value
            self.won = True
            self.value = value
            record.outcome = AttemptOutcome.SUCCESS.value
        else:
            record.outcome = AttemptOutcome.LOST_COMPLETED.value
        run.emit(EventKind.ATTEMPT_ENDED, deployment=self.target.name, attempt=record)
        try:
            await self._report(Report(latency=self.run.loop.time() - self.started))
        finally:
            if not self.won:
                await work.discard(value)

    async def _failed(self, error: UpstreamError) -> None:
        _forget_frames(error)
        record = self._end()
        run = self.run
        if not error.deployment:
            error.deployment = self.target.name
        self.error = error
        record.error_class = error.error_class.value
        record.status = error.status
        if not run.won:
            record.outcome = error.error_class.value
            run.errors.append(error)
        else:
            record.outcome = AttemptOutcome.LOST_FAILED.value
        run.emit(EventKind.ATTEMPT_ENDED, deployment=self.target.name, attempt=record, error=error)
        await self._report(self._failure_report(error))

    async def _abandoned(self) -> None:
        record = self._end()
        record.outcome = AttemptOutcome.CANCELLED.value
        self.run.emit(EventKind.ATTEMPT_ENDED, deployment=self.target.name, attempt=record)
        await self._report(
            Report(latency=self.run.loop.time() - self.started, cancelled=True),
        )

    def _end(self) -> AttemptRecord:
        self.record.end = self.run.offset(self.run.loop.time())
        self.run.delays.ended(self.target.name, self)
        return self.record

    def _failure_report(self, error: UpstreamError) -> Report:
        if isinstance(error, ConnectionUnavailable):
            # Failover's own pool gave up before the upstream was asked (rule 7): no health.
            return Report(latency=self.run.loop.time() - self.started, cancelled=True)
        return Report(
            error_class=error.error_class,
            retry_after=error.retry_after,
            latency=self.run.loop.time() - self.started,
        )

    async def _report(self, report: Report) -> None:
        # Health is bookkeeping: a health backend that fails must not lose the answer.
        try:
            await self.run.health.report(self.admission, report)
        except Exception:
            logger.exception("health report for deployment %r failed", self.target.name)

    def __repr__(self) -> str:
        return f"<Attempt {self.target.name!r} retry={self.record.retry} {self.record.outcome}>"


def _forget_frames(error: UpstreamError) -> None:
    """Drop the traceback of a failure the run keeps (``run.errors``, ``Attempt.error``): the run
    and the engine's frames refer to each other through it, a cycle only a full collection frees,
    and the traceback would keep the provider's frames in it too, with what they held (a whole
    answer's decoded payload). Nobody is shown it: an upstream failure is an outcome, not a bug.
    The exceptions it was raised from (its cause and context) let go of theirs too."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain is short; a bound keeps a cycle in one from looping
        if seen is None:
            return
        seen.__traceback__ = None
        seen = seen.__cause__ or seen.__context__
