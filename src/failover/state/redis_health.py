"""Provider health shared by every gateway through Redis: the ``redis`` state backend.

:class:`RedisHealth` implements :class:`failover.health.base.Health` with the rules of
:mod:`failover.health.machine`, run atomically in Redis by the scripts of
:mod:`failover.state.lua`, so N gateways share one view: a circuit opened by one is open for all,
a 429 cooldown seen by one is honoured by all, and one half-open probe runs across the fleet.

Round trips on the hot path:

- :meth:`~RedisHealth.plan` reads every target's record in one script call.
- :meth:`~RedisHealth.admit` needs none when the deployment's record was read less than
  ``cache_seconds`` ago and says available (or open, when no probe is asked for): the plan just
  read it. A half-open deployment, an early probe or a stale record take one call (the lease).
- :meth:`~RedisHealth.report` writes the outcome in one call, which also refreshes the record.

So a request whose first attempt answers costs two round trips. Recent latencies and success
rates (``/v1/status``, ``hedge_after: auto``) stay in this process: each gateway hedges on what it
measured itself, and sharing them would put a write of every sample on the hot path.

Whatever is in Redis is checked before it is believed: a record failover could not have written
(``probe=nan``, a break ending in 1e300, an unknown state, a key that is not a hash) reads as the
fresh record, in the scripts and in Python alike (:func:`~failover.health.machine.plausible`), is
logged once and is reset by the next update; it can neither hold its deployment nor push this
backend into its degraded mode. Every key written has a TTL (:mod:`failover.state.lua`).

When Redis is unreachable, slow (every call is bounded by ``timeout``) or broken, no request fails:
the backend logs one warning and runs the same machine on its local copy of the records, starting
from the last shared view and Redis' time as last seen, so breaks and cooldowns already known still
hold (a half-open probe is then single per gateway, no longer per fleet). Every ``retry_seconds``
one call tries Redis again; when it answers, one info is logged and the local copy is dropped: the
backend resumes reading the shared state rather than writing its own back. Other gateways kept the
shared view current while this one was cut off, and merging divergent local views has no right
answer; what a resumed gateway forgets costs at most ``failure_threshold`` attempts (or one 429) per
deployment to learn again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

from failover.clock import Clock
from failover.config import DeploymentConfig, HealthConfig, StateConfig
from failover.errors import ErrorClass
from failover.health import machine
from failover.health.base import Admission, DeploymentState, Plan, Report
from failover.health.breaker import DeploymentStatus, Transition, announce
from failover.health.machine import BreakerPolicy, BreakerRecord, Effect
from failover.health.stats import OutcomeWindow
from failover.state.redis_store import RedisHealthStore, StateUnavailable

__all__ = ["RedisHealth"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_WAITING = (DeploymentState.CIRCUIT_OPEN, DeploymentState.RATE_LIMITED)
_NOT_CONFIGURED = BreakerRecord(state=DeploymentState.NOT_CONFIGURED)
_FRESH = BreakerRecord()


class RedisHealth:
    """Per-deployment availability shared through Redis, fed by attempt outcomes.

    The same surface as :class:`~failover.health.memory.MemoryHealth` (``plan``, ``admit``,
    ``report``, ``status``, ``snapshot``, ``latency_quantile``, ``on_transition``), plus
    :attr:`degraded` and :meth:`aclose`. Records live under ``{key_prefix}health:{deployment}``.

    - ``timeout``: seconds a Redis call may take, all included, before the call is served locally
      and the backend goes degraded.
    - ``cache_seconds``: how long a record read from Redis lets :meth:`admit` decide without a call.
    - ``retry_seconds``: while degraded, how often one call tries Redis again.
    - ``clock``: local time (stats, cache ages, retries, and Redis' time between answers).
    - ``time_shift``: for tests, seconds added to Redis' clock, so that shared time moves with a
      ``ManualClock`` (pass ``clock.now``); None in production.
    - ``on_failure``: called once per Redis call that failed (timed out, refused, broken), the
      one that sends the backend degraded and each retry that finds Redis still out; calls
      served locally without asking Redis are not failures. The gateway passes
      :meth:`~failover.observe.Observability.redis_failed` (``failover_redis_failures_total``).

    >>> from failover.clock import ManualClock
    >>> gpt = DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key="sk-test")
    >>> health = RedisHealth(HealthConfig(), {"gpt": gpt}, ManualClock(), key_prefix="demo:")
    >>> health
    <RedisHealth prefix='demo:' shared gpt=available>
    """

    def __init__(
        self,
        config: HealthConfig,
        deployments: Mapping[str, DeploymentConfig],
        clock: Clock,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        key_prefix: str = "failover:",
        timeout: float = 0.1,
        cache_seconds: float = 1.0,
        retry_seconds: float = 1.0,
        on_transition: Callable[[Transition], None] | None = None,
        window_size: int = 256,
        window_seconds: float = 300.0,
        time_shift: Callable[[], float] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.store = RedisHealthStore(url, key_prefix=key_prefix, timeout=timeout)
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._retry_seconds = retry_seconds
        self._on_transition = on_transition
        self._on_failure = on_failure
        self._shift = time_shift
        self._policies = {
            name: BreakerPolicy.from_config(config, deployment)
            for name, deployment in deployments.items()
        }
        self._configured = {name: d.configured for name, d in deployments.items()}
        self._stats = {name: OutcomeWindow(window_size, window_seconds) for name in deployments}
        # The last shared record of each deployment (or, while degraded, the local one), and the
        # local time it was read from Redis (absent while degraded: nothing local is "fresh").
        self._records: dict[str, BreakerRecord] = {}
        self._read_at: dict[str, float] = {}
        self._skew = 0.0  # Redis' now minus the local clock's, as of the last answer
        self._degraded = False
        self._degraded_at = 0.0
        self._retry_at = 0.0
        self._trying = False
        self._epoch = 0  # bumped on each change of mode: late failures of the old one are ignored

    @classmethod
    def from_config(
        cls,
        state: StateConfig,
        config: HealthConfig,
        deployments: Mapping[str, DeploymentConfig],
        clock: Clock,
        *,
        on_transition: Callable[[Transition], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> RedisHealth:
        """The backend ``state: {backend: redis, url, key_prefix}`` asks for."""
        return cls(
            config,
            deployments,
            clock,
            url=state.url,
            key_prefix=state.key_prefix,
            on_transition=on_transition,
            on_failure=on_failure,
        )

    @property
    def degraded(self) -> bool:
        """True while Redis is out of reach and this gateway decides on its own records."""
        return self._degraded

    async def plan(self, targets: Sequence[str], *, early_probe: bool = True) -> Plan:
        """The targets that admit an attempt now, in order; else the early probe (rule 1)."""
        names = list(dict.fromkeys(targets))  # a target named twice is planned once
        for name in names:
            self._policy(name)  # a KeyError naming an unknown deployment, as MemoryHealth
        shared = [name for name in names if self._configured[name]]
        now = self._shared_now()
        if shared:
            answer = await self._exchange(lambda: self.store.read(shared, shift=self._shift_now()))
            if answer is not None:
                now, read = answer
                self._remember(now, dict(zip(shared, read, strict=True)))
        records = [(name, self._record(name)) for name in names]
        return machine.plan(records, now, early_probe=early_probe)

    async def admit(self, deployment: str, *, probe: bool = False) -> Admission | None:
        """Leave to start an attempt now, or None; ``probe=True`` asks for the early probe."""
        policy = self._policy(deployment)
        if not self._configured[deployment]:
            return None
        if self._is_fresh(deployment):
            state = machine.effective_state(self._records[deployment], self._shared_now())
            if state is DeploymentState.AVAILABLE:
                return Admission(deployment)
            if state in _WAITING and not probe:
                return None
        answer = await self._exchange(
            lambda: self.store.admit(deployment, policy, early=probe, shift=self._shift_now())
        )
        if answer is not None:
            self._remember(answer.now, {deployment: answer.record})
            admitted, lease = answer.admitted, answer.lease
        else:
            result = machine.admit(
                self._record(deployment), self._shared_now(), policy, early=probe
            )
            self._records[deployment] = result.record
            admitted, lease = result.admitted, result.lease
        if not admitted:
            return None
        return Admission(deployment, probe=lease is not None, lease=lease)

    async def report(self, admission: Admission, report: Report) -> None:
        """Feed one attempt's outcome to its deployment's shared health."""
        name = admission.deployment
        policy = self._policy(name)
        if not self._configured[name]:
            return
        answer = await self._exchange(
            lambda: self.store.report(
                name, policy, report, lease=admission.lease, shift=self._shift_now()
            )
        )
        if answer is not None:
            self._remember(answer.now, {name: answer.record})
            now, before, after, record = answer.now, answer.before, answer.after, answer.record
        else:
            now = self._shared_now()
            result = machine.report(
                self._record(name),
                now,
                policy,
                error_class=report.error_class,
                retry_after=report.retry_after,
                cancelled=report.cancelled,
                lease=admission.lease,
            )
            before, after, record = result.before, result.after, result.record
            self._records[name] = record
        self._sample(name, report)
        if before is not after:
            waiting = after in _WAITING
            announce(
                Transition(
                    deployment=name,
                    before=before,
                    after=after,
                    error_class=None if report.cancelled else report.error_class,
                    seconds=record.until - now if waiting else None,
                ),
                self._on_transition,
                logger,
            )

    def latency_quantile(
        self, deployment: str, q: float, *, running: Sequence[float] = (), min_samples: int = 1
    ) -> float | None:
        """This gateway's recent ``q`` latency quantile of ``deployment`` (adaptive hedging).

        ``running``: elapsed times of its attempts still running here; None below
        ``min_samples`` samples.
        """
        self._policy(deployment)
        return self._stats[deployment].quantile(
            self._clock.now(), q, running=running, min_samples=min_samples
        )

    def snapshot(self) -> dict[str, DeploymentStatus]:
        """Every deployment's status as last seen, in config order, without asking Redis."""
        now = self._shared_now()
        return {name: self._status(name, now) for name in self._policies}

    async def status(self) -> dict[str, DeploymentStatus]:
        """Every deployment's status now: the shared records read in one call, local stats."""
        shared = [name for name in self._policies if self._configured[name]]
        if shared:
            answer = await self._exchange(lambda: self.store.read(shared, shift=self._shift_now()))
            if answer is not None:
                self._remember(answer[0], dict(zip(shared, answer[1], strict=True)))
        return self.snapshot()

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self.store.aclose()

    async def __aenter__(self) -> RedisHealth:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- records, time and the degraded mode ------------------------------------------------

    def _policy(self, deployment: str) -> BreakerPolicy:
        try:
            return self._policies[deployment]
        except KeyError:
            raise KeyError(f"unknown deployment {deployment!r}") from None

    def _record(self, deployment: str) -> BreakerRecord:
        if not self._configured[deployment]:
            return _NOT_CONFIGURED
        return self._records.get(deployment, _FRESH)

    def _shift_now(self) -> float:
        return 0.0 if self._shift is None else self._shift()

    def _shared_now(self) -> float:
        """Redis' now, estimated from the local clock and the offset seen in the last answer."""
        return self._clock.now() + self._skew

    def _is_fresh(self, deployment: str) -> bool:
        read_at = self._read_at.get(deployment)
        return read_at is not None and self._clock.now() - read_at <= self._cache_seconds

    def _remember(self, now: float, records: Mapping[str, BreakerRecord]) -> None:
        local = self._clock.now()
        self._skew = now - local
        self._records.update(records)
        if not self._degraded:
            self._read_at.update(dict.fromkeys(records, local))

    async def _exchange(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """One Redis call, or None when the answer must come from the local records.

        While degraded, only one call at a time, once per ``retry_seconds``, tries Redis again;
        the others return None at once, without awaiting anything.
        """
        trying = False
        if self._degraded:
            if self._trying or self._clock.now() < self._retry_at:
                return None
            self._trying = trying = True
        epoch = self._epoch
        try:
            if trying:
                await self.store.drop_idle_connections()  # start afresh, not on a dead socket
            answer = await call()
        except StateUnavailable as exc:
            self._failed()
            if trying:
                self._retry_at = self._clock.now() + self._retry_seconds
                logger.debug("shared health state still unavailable: %s", exc)
            elif epoch == self._epoch:
                self._degrade(exc)
            return None
        finally:
            if trying:
                self._trying = False
        if trying:
            self._recover()
        return answer

    def _failed(self) -> None:
        """Tell ``on_failure`` of one failed Redis call; its bugs are logged, never raised."""
        if self._on_failure is not None:
            try:
                self._on_failure()
            except Exception:
                logger.exception("the Redis failure observer failed")

    def _degrade(self, exc: StateUnavailable) -> None:
        now = self._clock.now()
        self._degraded = True
        self._epoch += 1
        self._degraded_at = now
        self._retry_at = now + self._retry_seconds
        self._read_at.clear()
        logger.warning(
            "shared health state unavailable (%s); this gateway decides on its own view of "
            "deployment health until Redis answers again",
            exc,
        )

    def _recover(self) -> None:
        self._degraded = False
        self._epoch += 1
        # Resume the shared view: what this gateway learnt alone is dropped, not written back.
        self._records.clear()
        self._read_at.clear()
        logger.info(
            "shared health state reachable again after %.1fs; resuming the shared view",
            self._clock.now() - self._degraded_at,
        )

    # -- stats, status and observers ----------------------------------------------------------

    def _sample(self, deployment: str, outcome: Report) -> None:
        # As CircuitBreaker does: the request's own faults say nothing about the deployment.
        stats, now = self._stats[deployment], self._clock.now()
        if outcome.cancelled:
            stats.add(now, ok=None, latency=outcome.latency)
        elif outcome.error_class is None:
            stats.add(now, ok=True, latency=outcome.latency)
        elif machine.EFFECTS[outcome.error_class] is not Effect.NONE:
            timed_out = outcome.error_class is ErrorClass.TIMEOUT
            stats.add(now, ok=False, latency=outcome.latency if timed_out else None)

    def _status(self, deployment: str, now: float) -> DeploymentStatus:
        summary = self._stats[deployment].summary(self._clock.now())
        return DeploymentStatus.of(deployment, self._record(deployment), now, summary)

    def __repr__(self) -> str:
        now = self._shared_now()
        mode = "degraded" if self._degraded else "shared"
        states = ", ".join(
            f"{name}={machine.effective_state(self._record(name), now).value}"
            for name in self._policies
        )
        return f"<RedisHealth prefix={self.store.key_prefix!r} {mode} {states}>"
