"""Scripted fakes for engine tests: providers that sleep on the loop's clock, health, observer.

Everything here runs on :func:`failover.clock.run_virtual`: a request that starts at loop time 0
reads its times straight off the records. A :class:`FakeProvider` plays one :class:`Step` per call
(the last one repeats) and records every call: when it started and ended, and whether it
completed, failed, was cancelled, or (a stream) was closed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from failover.clock import run_virtual
from failover.config import DeploymentConfig, RouteConfig
from failover.engine import Engine, Event, EventKind
from failover.errors import ErrorClass, UpstreamError, UpstreamStatusError
from failover.health.base import Admission, Plan, Report
from failover.types import AttemptRecord, ChatRequest, ChatResult, Completion, StreamChunk

REQUEST = ChatRequest(messages=[{"role": "user", "content": "hi"}])
DEFAULT = "INTENT_FALLBACK"

_STATUS = {
    ErrorClass.CONNECTION: None,
    ErrorClass.TIMEOUT: 408,
    ErrorClass.RATE_LIMIT: 429,
    ErrorClass.QUOTA: 402,
    ErrorClass.AUTH: 401,
    ErrorClass.CONTEXT_OVERFLOW: 400,
    ErrorClass.BAD_REQUEST: 400,
    ErrorClass.NOT_FOUND: 404,
    ErrorClass.SERVER_ERROR: 500,
    ErrorClass.MALFORMED: 200,
}


def upstream_error(error_class: ErrorClass, retry_after: float | None = None) -> UpstreamError:
    """The error an adapter would raise for ``error_class``."""
    return UpstreamStatusError(
        f"upstream said {error_class.value}",
        status=_STATUS[error_class],
        retry_after=retry_after,
        error_class=error_class,
    )


@dataclass(frozen=True)
class Step:
    """One call: wait ``latency`` seconds, then answer, raise ``error``, or (``hang``) never end.

    For a stream, ``pieces`` are (delay, chunk or error) played in order after ``latency``.
    """

    latency: float = 0.0
    error: ErrorClass | None = None
    retry_after: float | None = None
    hang: bool = False
    pieces: tuple[tuple[float, StreamChunk | UpstreamError], ...] = ()


def ok(latency: float = 0.0) -> Step:
    return Step(latency)


def fail(latency: float = 0.0, error: ErrorClass = ErrorClass.SERVER_ERROR, **kw: Any) -> Step:
    return Step(latency, error=error, **kw)


def hang() -> Step:
    return Step(hang=True)


def chunk(content: str | None = None, *, role: str | None = None) -> StreamChunk:
    delta: dict[str, str] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


@dataclass
class Call:
    """One call a fake provider received, in loop seconds."""

    start: float
    end: float | None = None
    outcome: str = "running"  # completed | failed | cancelled | closed


@dataclass
class FakeProvider:
    """A provider adapter playing a script; ``calls`` records what happened to each call."""

    name: str
    steps: Sequence[Step]
    timeout: float = 30.0
    max_retries: int = 0
    calls: list[Call] = field(default_factory=list)

    @property
    def deployment(self) -> DeploymentConfig:
        return DeploymentConfig(
            name=self.name,
            provider="openai-compatible",
            model=self.name,
            api_base="http://127.0.0.1:9/v1",
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def _next(self) -> tuple[Step, Call]:
        step = self.steps[min(len(self.calls), len(self.steps) - 1)]
        call = Call(start=_now())
        self.calls.append(call)
        return step, call

    async def complete(self, request: ChatRequest) -> Completion:
        step, call = self._next()
        try:
            await _wait(step)
        except asyncio.CancelledError:
            _end(call, "cancelled")
            raise
        if step.error is not None:
            _end(call, "failed")
            raise upstream_error(step.error, step.retry_after)
        _end(call, "completed")
        return {
            "object": "chat.completion",
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"from {self.name}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        return self._stream(*self._next())

    async def _stream(self, step: Step, call: Call) -> AsyncIterator[StreamChunk]:
        try:
            await _wait(step)
            if step.error is not None:
                _end(call, "failed")
                raise upstream_error(step.error, step.retry_after)
            for delay, piece in step.pieces:
                await asyncio.sleep(delay)
                if isinstance(piece, UpstreamError):
                    _end(call, "failed")
                    raise piece
                yield piece
            _end(call, "completed")
        except asyncio.CancelledError:
            _end(call, "cancelled")
            raise
        except GeneratorExit:
            _end(call, "closed")
            raise

    async def probe(self) -> None:
        return None


def _now() -> float:
    return asyncio.get_running_loop().time()


def _end(call: Call, outcome: str) -> None:
    if call.end is None:
        call.end = _now()
        call.outcome = outcome


async def _wait(step: Step) -> None:
    if step.hang:
        await asyncio.Event().wait()
    await asyncio.sleep(step.latency)


class RecordingHealth:
    """Health where every deployment is available; it records what the engine asked and told."""

    def __init__(self) -> None:
        self.plans: list[tuple[str, ...]] = []
        self.admits: list[tuple[str, bool]] = []
        self.reports: list[tuple[str, Report]] = []

    async def plan(self, targets: Sequence[str], *, early_probe: bool = True) -> Plan:
        self.plans.append(tuple(targets))
        return Plan(available=tuple(targets))

    async def admit(self, deployment: str, *, probe: bool = False) -> Admission | None:
        self.admits.append((deployment, probe))
        return Admission(deployment, probe=probe)

    async def report(self, admission: Admission, report: Report) -> None:
        self.reports.append((admission.deployment, report))

    def reported(self, deployment: str) -> list[str]:
        """What ``deployment``'s reports said, in order: 'success', a class, or 'cancelled'."""
        return [
            "cancelled"
            if report.cancelled
            else (report.error_class.value if report.error_class else "success")
            for name, report in self.reports
            if name == deployment
        ]


class StateHealth(RecordingHealth):
    """Health in states the test sets: unavailable deployments, an early probe, refusals."""

    def __init__(
        self,
        *,
        unavailable: Iterable[str] = (),
        probe: str | None = None,
        retry_after: float | None = None,
        refuse: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.unavailable = set(unavailable)
        self.probe = probe
        self.retry_after = retry_after
        self.refuse = set(refuse)

    async def plan(self, targets: Sequence[str], *, early_probe: bool = True) -> Plan:
        self.plans.append(tuple(targets))
        available = tuple(name for name in targets if name not in self.unavailable)
        if available:
            return Plan(available=available)
        return Plan(available=(), probe=self.probe, retry_after=self.retry_after)

    async def admit(self, deployment: str, *, probe: bool = False) -> Admission | None:
        self.admits.append((deployment, probe))
        if deployment in self.refuse:
            return None
        return Admission(deployment, probe=probe)


class RecordingObserver:
    """Keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, *, notable_only: bool = True) -> list[str]:
        """The kinds in order; by default without the per-attempt ones."""
        routine = {EventKind.ATTEMPT_STARTED, EventKind.ATTEMPT_ENDED, EventKind.HEDGE_STARTED}
        return [e.kind.value for e in self.events if not (notable_only and e.kind in routine)]

    def timeline(self) -> list[tuple[str, float, str | None]]:
        """(kind, seconds from arrival, deployment) of the notable events."""
        routine = {EventKind.ATTEMPT_STARTED, EventKind.ATTEMPT_ENDED}
        return [
            (e.kind.value, round(e.at, 6), e.deployment)
            for e in self.events
            if e.kind not in routine
        ]


def route(targets: Sequence[str], **options: Any) -> RouteConfig:
    """The route ``intent`` over ``targets``."""
    return RouteConfig(name="intent", targets=tuple(targets), **options)


def engine_for(
    providers: Sequence[FakeProvider],
    health: RecordingHealth | None = None,
    *,
    observer: RecordingObserver | None = None,
    seed: int = 0,
    max_background: int = 1000,
) -> Engine:
    """An engine over the fakes (on the running loop's time), with seeded jitter and a fixed
    wall clock."""
    return Engine(
        {p.name: p for p in providers},
        {p.name: p.deployment for p in providers},
        health if health is not None else RecordingHealth(),
        rng=random.Random(seed),
        observer=observer,
        max_background=max_background,
        wall_clock=lambda: 1_700_000_000.0,
    )


def pending_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the running loop that have not ended, the caller's own excluded."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def waits(calls: Sequence[Call]) -> list[float]:
    """The waits between consecutive calls: each call's start minus the previous one's end
    (virtual time: a backoff the engine slept is exactly this gap)."""
    return [
        round(later.start - (earlier.end if earlier.end is not None else earlier.start), 9)
        for earlier, later in itertools.pairwise(calls)
    ]


def records(attempts: Iterable[Any]) -> list[tuple[str, float, float | None, str]]:
    """(deployment, start, end, outcome) of each attempt record, times rounded."""
    return [
        (
            a.deployment,
            round(a.start, 6),
            None if a.end is None else round(a.end, 6),
            a.outcome,
        )
        for a in attempts
    ]


@dataclass
class Played:
    """What happened to one ``chat`` request, as :func:`play` saw it."""

    result: ChatResult | None
    error: BaseException | None
    answered_at: float
    at_answer: list[tuple[str, float, float | None, str]]
    final: list[tuple[str, float, float | None, str]]
    background_at_answer: int
    only_losers_left: bool
    left_after_close: int
    observer: RecordingObserver
    health: RecordingHealth
    attempts: list[AttemptRecord]


def play(
    providers: Sequence[FakeProvider],
    route_config: RouteConfig,
    *,
    health: RecordingHealth | None = None,
    cancel_at: float | None = None,
    settle: float = 30.0,
    seed: int = 0,
) -> Played:
    """Run one ``chat`` from loop time 0 on virtual time; then let losers end, then aclose()."""

    async def scenario() -> Played:
        loop = asyncio.get_running_loop()
        observer = RecordingObserver()
        used_health = health if health is not None else RecordingHealth()
        engine = engine_for(providers, used_health, observer=observer, seed=seed)
        task = loop.create_task(engine.chat(route_config, REQUEST, request_id="req-1"))
        if cancel_at is not None:
            loop.call_at(cancel_at, task.cancel)
        result: ChatResult | None = None
        error: BaseException | None = None
        try:
            result = await task
        except (asyncio.CancelledError, Exception) as exc:
            error = exc
        answered_at = loop.time()
        started = [
            e.attempt
            for e in observer.events
            if e.kind is EventKind.ATTEMPT_STARTED and e.attempt is not None
        ]
        at_answer = records(started)
        background = len(engine.background)
        only_losers_left = pending_tasks() == set(engine.background.tasks())
        await asyncio.sleep(settle)
        final = records(started)
        await engine.aclose()
        return Played(
            result=result,
            error=error,
            answered_at=answered_at,
            at_answer=at_answer,
            final=final,
            background_at_answer=background,
            only_losers_left=only_losers_left,
            left_after_close=len(pending_tasks()),
            observer=observer,
            health=used_health,
            attempts=started,
        )

    return run_virtual(scenario())
