"""One request's state while the engine runs it: times, records, failures, whether it was won.

A :class:`RequestRun` is the explicit context that travels through the runners and attempts of
one request (no thread-local, no global): it holds what the engine lent it (health, randomness,
observer, background pool, the running event loop whose time is the request's) and what the
request has produced so far. It knows nothing of attempts but their records: an attempt
(:mod:`~failover.engine.attempt`) writes into its run, never the other way round.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from failover.engine.adaptive import HedgeDelays
from failover.engine.events import Event, EventKind, Observer, notify
from failover.engine.losers import LoserPool
from failover.engine.route import RoutePlan, Target
from failover.errors import UpstreamError
from failover.health.base import Health
from failover.types import AttemptRecord, ChatRequest

__all__ = ["RequestRun"]


class RequestRun:
    """The state of one request, from its arrival to its answer.

    Time is ``loop``'s, the event loop the request runs on (``loop.time()``; tests run it on a
    :class:`~failover.clock.VirtualTimeLoop`). ``records`` is the caller's list when it gave one,
    else a new one: every attempt appends its record as it starts, and a background loser
    completes its record in it after the answer; :class:`~failover.types.ChatResult`,
    :class:`~failover.errors.AllTargetsFailed` and :class:`~failover.errors.NoTargetAvailable`
    hand out that same list. ``errors`` holds each failed attempt's error in the order they ended
    (those that ended after the win are not in it). ``won`` is set by the first attempt that
    succeeds, and ``value`` is then what it produced, until the engine has used it (or closed it,
    when the request ends without using it).
    """

    __slots__ = (
        "bad_request",
        "deadline_at",
        "deadline_passed",
        "delays",
        "errors",
        "health",
        "loop",
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
        "value",
        "won",
    )

    def __init__(
        self,
        route: RoutePlan,
        request: ChatRequest,
        request_id: str,
        *,
        health: Health,
        rng: random.Random,
        observer: Observer | None,
        losers: LoserPool,
        delays: HedgeDelays,
        records: list[AttemptRecord] | None = None,
    ) -> None:
        self.route = route
        self.request = request
        self.request_id = request_id
        self.health = health
        self.rng = rng
        self.observer = observer
        self.losers = losers
        self.delays = delays
        self.loop = loop = asyncio.get_running_loop()
        self.t0 = loop.time()
        self.deadline_at = self.t0 + route.deadline
        self.records: list[AttemptRecord] = records if records is not None else []
        self.errors: list[UpstreamError] = []
        self.won = False  # an attempt succeeded: any that ends later is a loser
        self.value: Any = None  # the winner's value (see the class docstring)
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
        at = self.loop.time() - self.t0
        notify(
            self.observer,
            Event(kind, self.route.name, self.request_id, at, deployment, attempt, error),
        )

    def hedge_delay(self, target: Target, now: float) -> float | None:
        """Seconds an attempt of ``target`` starting at ``now`` may run before the next one is
        started beside it, as the route's :class:`~failover.engine.route.HedgePolicy` says: its
        fixed delay, or with ``auto`` the deployment's recent p95 within its bounds; None for a
        sequential route."""
        policy = self.route.hedge
        if policy.bounds is None:
            return policy.delay
        return self.delays.delay(target.name, policy, now)

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
