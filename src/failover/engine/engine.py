"""The resilience engine: one request's life over a route (docs/semantics.md).

:class:`Engine` is built once per gateway. For each request it asks health which targets may be
tried (rule 1), runs them sequentially (rule 2, :mod:`~failover.engine.sequential`) or hedged
(rule 3, :mod:`~failover.engine.hedged`) under the route's deadline (rule 5), and turns the outcome
into the answer: the winner's completion or stream, else the route's default response, else an
error. What failed is told apart here:

- a bad request (rule 9): the first 400 as the provider worded it, never the default;
- nothing could be tried (rule 1): :class:`~failover.errors.NoTargetAvailable` with Retry-After;
- every attempt failed: :class:`~failover.errors.AllTargetsFailed`, each attempt's error in it;
- a bug inside failover (an unexpected exception; the ``000_*`` table's case 8.2): logged with its
  traceback, then the default response, else the exception itself.

The caller's cancellation (rule 6) cancels every attempt and propagates; no default is made up.

Whatever the outcome, the request's attempt records are one list, filled in place as attempts
start and end (a background loser completes its record after the answer): the caller may pass its
own (``attempts=``) and keep it whatever is raised; the result, the stream and the two errors above
carry that same list as ``attempts``.

Time is the running event loop's (``loop.time()``, ``loop.call_at``, ``asyncio.sleep``): every
timeout, hedge, backoff and deadline is a loop timer, so there is no clock to pass. Tests inject
time by running the engine on a :class:`~failover.clock.VirtualTimeLoop`, where virtual seconds
pass in no real time and timers fire exactly when due.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from failover.config import DeploymentConfig, RouteConfig
from failover.engine.adaptive import HedgeDelays
from failover.engine.attempt import COMPLETE, Attempt, Work
from failover.engine.default import default_chunks, default_completion
from failover.engine.events import EventKind, Observer
from failover.engine.hedged import run_hedged
from failover.engine.losers import LoserPool
from failover.engine.route import RoutePlan
from failover.engine.run import RequestRun
from failover.engine.sequential import run_sequential
from failover.engine.streaming import STREAM, CommittedStream
from failover.errors import (
    AllTargetsFailed,
    DeadlineExceeded,
    FailoverError,
    NoTargetAvailable,
    RejectedError,
    UpstreamError,
)
from failover.health.base import Health, LatencyStats
from failover.providers.base import ChatProvider
from failover.types import AttemptRecord, ChatRequest, ChatResult, Usage

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Engine:
    """Runs requests over routes: failover, retries, hedging, deadline, losers, default.

    ``providers`` and ``deployments`` are keyed by deployment name. Its time is the running
    event loop's (tests run it on a :class:`~failover.clock.VirtualTimeLoop`). ``rng`` draws the
    retry jitter; ``observer`` receives the :mod:`~failover.engine.events`; ``max_background``
    bounds the losers kept running after their answer; ``wall_clock`` dates default responses.

    ::

        engine = Engine(providers, deployments, health, observer=metrics)
        attempts: list[AttemptRecord] = []
        try:
            result = await engine.chat(route, ChatRequest(messages), request_id="req-1",
                                       attempts=attempts)
        except AllTargetsFailed as failed:
            assert failed.attempts is attempts
        async with await engine.open_stream(route, request, request_id="req-2") as stream:
            async for chunk in stream:
                ...
        await engine.aclose()
    """

    def __init__(
        self,
        providers: Mapping[str, ChatProvider],
        deployments: Mapping[str, DeploymentConfig],
        health: Health,
        *,
        rng: random.Random | None = None,
        observer: Observer | None = None,
        max_background: int = 1000,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._providers = providers
        self._deployments = deployments
        self._health = health
        self._rng = rng if rng is not None else random.Random()
        self._observer = observer
        self._losers = LoserPool(max_background)
        self._wall_clock = wall_clock
        self._routes: dict[str, RoutePlan] = {}
        stats = health if isinstance(health, LatencyStats) else None
        self._delays = HedgeDelays(stats)

    @property
    def background(self) -> LoserPool:
        """The losers still running in the background (``len()`` counts them)."""
        return self._losers

    def prepare(self, route: RouteConfig) -> RoutePlan:
        """The route's plan, built on first use (ConfigError when a target cannot be resolved).

        Call it at start-up to check every route once; requests reuse the plan and the route's
        retry budget, keyed by the route's name.
        """
        plan = self._routes.get(route.name)
        if plan is None or (plan.config is not route and plan.config != route):
            plan = RoutePlan.build(route, self._providers, self._deployments)
            self._routes[route.name] = plan
        return plan

    async def chat(
        self,
        route: RouteConfig,
        request: ChatRequest,
        *,
        request_id: str,
        attempts: list[AttemptRecord] | None = None,
    ) -> ChatResult:
        """Answer ``request`` over ``route``: the winner's completion, or the default response.

        Raises the first :class:`~failover.errors.UpstreamError` of class ``bad_request`` (rule 9),
        :class:`~failover.errors.NoTargetAvailable`, or :class:`~failover.errors.AllTargetsFailed`
        when the route has no default; :func:`~failover.errors.failure_of` says what they amount to.
        ``attempts``, when given, is the list the attempt records go in (the result's and the
        errors' ``attempts`` are then that list): the caller has them whatever happens.
        """
        run = self._new_run(route, request, request_id, attempts)
        try:
            winner = await self._race(run, COMPLETE)
        except Exception as bug:
            self._give_up_on_bug(run, bug)
            return self._default_result(run)
        if winner is not None and winner.value is not None:
            completion = winner.value
            return ChatResult(
                completion=completion,
                deployment=winner.target.name,
                degraded=False,
                usage=Usage.from_openai(completion.get("usage")),
                attempts=run.records,
                request_id=request_id,
            )
        self._give_up(run, self._failure(run))
        return self._default_result(run)

    async def open_stream(
        self,
        route: RouteConfig,
        request: ChatRequest,
        *,
        request_id: str,
        attempts: list[AttemptRecord] | None = None,
    ) -> CommittedStream:
        """Open a stream over ``route``; returns at its commit (rule 8), raises like :meth:`chat`.

        Before the commit failover and hedging work as for :meth:`chat`; the stream returned
        replays the chunks held until then. With the default response it is a short stream of it
        (``degraded``). ``attempts`` is as for :meth:`chat` (the winner's record ends when the
        stream does).
        """
        run = self._new_run(route, request, request_id, attempts)
        try:
            winner = await self._race(run, STREAM)
        except asyncio.CancelledError:
            await self._discard_win(run)
            raise
        except Exception as bug:
            await self._discard_win(run)
            self._give_up_on_bug(run, bug)
            return self._default_stream(run)
        if winner is not None and winner.value is not None:
            opened = winner.value
            return CommittedStream(
                opened.held,
                opened.upstream,
                attempt=winner,
                attempts=run.records,
                request_id=request_id,
            )
        self._give_up(run, self._failure(run))
        return self._default_stream(run)

    async def aclose(self) -> None:
        """End every loser still running in the background (requests still work afterwards,
        but keep no loser)."""
        await self._losers.aclose()

    def _new_run(
        self,
        route: RouteConfig,
        request: ChatRequest,
        request_id: str,
        attempts: list[AttemptRecord] | None,
    ) -> RequestRun:
        return RequestRun(
            self.prepare(route),
            request,
            request_id,
            health=self._health,
            rng=self._rng,
            observer=self._observer,
            losers=self._losers,
            delays=self._delays,
            records=attempts,
        )

    async def _race(self, run: RequestRun, work: Work[T]) -> Attempt[T] | None:
        """Rule 1 then rule 2 or 3: the winning attempt, or None (``run`` says why)."""
        route = run.route
        if not route.names:
            return None
        plan = await self._health.plan(route.names)
        run.retry_after = plan.retry_after
        if plan.available:
            targets = [route.targets[name] for name in plan.available]
        elif plan.probe is not None:
            targets = [route.targets[plan.probe]]
            run.probing = True
        else:
            return None
        if route.hedge.delay is None:
            return await run_sequential(run, targets, work)
        return await run_hedged(run, targets, work)

    def _failure(self, run: RequestRun) -> FailoverError | UpstreamError:
        """Why the request has no winner, as the error to answer with."""
        if run.bad_request is not None:
            return run.bad_request
        name = run.route.name
        if not run.records and not run.deadline_passed:
            return NoTargetAvailable(name, run.retry_after, attempts=run.records)
        errors: list[UpstreamError | RejectedError] = list(run.errors)
        if run.deadline_passed:
            errors.append(DeadlineExceeded(name, run.route.deadline))
        return AllTargetsFailed(
            name, errors, deadline_passed=run.deadline_passed, attempts=run.records
        )

    def _give_up(self, run: RequestRun, error: Exception) -> None:
        """Raise ``error`` unless the route has a default response to give instead."""
        if error is run.bad_request:
            raise error  # the client's own mistake: never the default, and not an outage
        run.emit(EventKind.ALL_FAILED, error=error)
        if run.route.default_response is None:
            raise error
        run.emit(EventKind.DEFAULT_SERVED)

    def _give_up_on_bug(self, run: RequestRun, bug: Exception) -> None:
        logger.exception(
            "route %r, request %s: unexpected error inside failover",
            run.route.name,
            run.request_id,
            exc_info=bug,
        )
        self._give_up(run, bug)

    async def _discard_win(self, run: RequestRun) -> None:
        """Close a stream that won but will never be handed out (cancelled, or a bug)."""
        if run.value is not None:
            await STREAM.discard(run.value)

    def _default_result(self, run: RequestRun) -> ChatResult:
        text = run.route.default_response or ""
        completion = default_completion(
            text, route=run.route.name, request_id=run.request_id, created=self._created()
        )
        return ChatResult(
            completion=completion,
            deployment=None,
            degraded=True,
            usage=Usage(),
            attempts=run.records,
            request_id=run.request_id,
        )

    def _default_stream(self, run: RequestRun) -> CommittedStream:
        text = run.route.default_response or ""
        chunks = default_chunks(
            text, route=run.route.name, request_id=run.request_id, created=self._created()
        )
        return CommittedStream(
            chunks, None, attempt=None, attempts=run.records, request_id=run.request_id
        )

    def _created(self) -> int:
        return int(self._wall_clock())

    def __repr__(self) -> str:
        return f"<Engine routes={len(self._routes)} background={len(self._losers)}>"
