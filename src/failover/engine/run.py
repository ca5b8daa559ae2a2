"""One request's state while the engine runs it: times, records, failures, the winner.

A :class:`RequestRun` is the explicit context that travels through the runners and attempts of
one request (no thread-local, no global): it holds what the engine lent it (clock, health,
randomness, observer, background pool) and what the request has produced so far.
"""

from __future__ import annotations

import random
from typing import Any

from failover.clock import Clock
from failover.engine.adaptive import HedgeDelays
from failover.engine.attempt import Attempt
from failover.engine.events import Event, EventKind, Observer, notify
from failover.engine.losers import LoserPool
from failover.engine.route import RoutePlan, Target
from failover.errors import UpstreamError
from failover.health.base import Health
from failover.types import AttemptRecord, ChatRequest

__all__ = ["RequestRun"]


class RequestRun:
    """The state of one request, from its arrival to its answer.

    ``records`` is the list :class:`~failover.types.ChatResult` hands out: background losers
    complete their record in it after the answer. ``errors`` holds each failed attempt's error in
    the order they ended (those that ended after the win are not in it).
    """

    __slots__ = (
        "bad_request",
        "clock",
        "deadline_at",
        "deadline_passed",
        "delays",
        "errors",
        "health",
        "losers",
        "observer",
        "probing",
        "records",
        "request",
        "request_id",
        "retry_after",
        "rng",
        "route",
        "t0",
        "winner",
        "won",
    )

    def __init__(
        self,
        route: RoutePlan,
        request: ChatRequest,
        request_id: str,
        *,
        clock: Clock,
        health: Health,
        rng: random.Random,
        observer: Observer | None,
        losers: LoserPool,
        delays: HedgeDelays,
    ) -> None:
        self.route = route
        self.request = request
        self.request_id = request_id
        self.clock = clock
        self.health = health
        self.rng = rng
        self.observer = observer
        self.losers = losers
        self.delays = delays
        self.t0 = clock.now()
        self.deadline_at = self.t0 + route.deadline
        self.records: list[AttemptRecord] = []
        self.errors: list[UpstreamError] = []
        self.winner: Attempt[Any] | None = None  # until the answer is built: see release()
        self.won = False  # an attempt succeeded: any that ends later is a loser
        self.bad_request: UpstreamError | None = None
        self.deadline_passed = False
        self.probing = False  # the targets are the health plan's early half-open probe
        self.retry_after: float | None = None  # from the health plan: the soonest break end

    def offset(self, now: float) -> float:
        """Seconds from the request's arrival to ``now``."""
        return now - self.t0

    def emit(
        self,
        kind: EventKind,
        *,
        deployment: str | None = None,
        attempt: AttemptRecord | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Tell the observer, if there is one (nothing is built otherwise)."""
        if self.observer is None:
            return
        at = self.clock.now() - self.t0
        notify(
            self.observer,
            Event(kind, self.route.name, self.request_id, at, deployment, attempt, error),
        )

    def hedge_delay(self, target: Target) -> float | None:
        """Seconds an attempt of ``target`` starting now may run before the next one is started
        beside it: the route's ``hedge_after``, or with ``auto`` its deployment's recent p95
        within the route's bounds; None for a sequential route."""
        bounds = self.route.hedge_bounds
        if bounds is None:
            return self.route.hedge_after
        return self.delays.delay(target.name, bounds)

    async def admit(self, target: Target, *, retry: int, hedge: bool) -> Attempt[Any] | None:
        """Start an attempt of ``target`` if health admits it now; None when it does not.

        Counts the attempt in the route's retry budget: a retry or a hedge as extra, anything
        else (the first attempt of a target) as first.
        """
        admission = await self.health.admit(target.name, probe=self.probing)
        if admission is None:
            return None
        now = self.clock.now()
        if retry or hedge:
            self.route.budget.record_extra(now)
        else:
            self.route.budget.record_first(now)
        return Attempt(self, target, admission, retry=retry, hedge=hedge)

    def release(self) -> None:
        """The answer is built: forget the winning attempt, which refers back to this run, so
        that the request's objects go with their last reference instead of waiting for the
        garbage collector (``won`` still tells later attempts that they lost)."""
        self.winner = None

    def note_bad_request(self, error: UpstreamError, target: Target) -> None:
        """Rule 9: remember the first 400; one from a target but the route's first is reported."""
        if self.bad_request is None:
            self.bad_request = error
        if target.position > 0:
            self.emit(EventKind.BAD_REQUEST_TRANSLATION, deployment=target.name, error=error)

    def __repr__(self) -> str:
        return (
            f"<RequestRun {self.route.name!r} {self.request_id!r} "
            f"attempts={len(self.records)} errors={len(self.errors)}>"
        )
