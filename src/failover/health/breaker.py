"""One deployment's circuit breaker: the pure machine's record, driven on an injected ``now``.

:class:`CircuitBreaker` keeps a :class:`~failover.health.machine.BreakerRecord` and an
:class:`~failover.health.stats.OutcomeWindow` for one deployment and speaks the vocabulary of
:mod:`failover.health.base` (``Admission``, ``Report``). It reads time only through the ``now``
callable it is given (``clock.now``), so tests drive it with a ``ManualClock``. Each report that
changes the visible state returns a :class:`Transition`, which the observability layer turns into
alerts without the health code knowing any exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover.errors import ErrorClass
from failover.health import machine
from failover.health.base import Admission, DeploymentState, Report
from failover.health.machine import BreakerPolicy, BreakerRecord, Effect
from failover.health.stats import OutcomeWindow, WindowSummary

__all__ = ["CircuitBreaker", "DeploymentStatus", "Transition", "announce"]

_WAITING = (DeploymentState.CIRCUIT_OPEN, DeploymentState.RATE_LIMITED)


@dataclass(frozen=True, slots=True)
class Transition:
    """A deployment's visible state changed because of one attempt's outcome.

    ``error_class`` is the outcome that caused it (None for a success) and ``seconds`` how long
    the new state lasts when it is a break or a cooldown.
    """

    deployment: str
    before: DeploymentState
    after: DeploymentState
    error_class: ErrorClass | None
    seconds: float | None = None

    @property
    def alert(self) -> str | None:
        """The alert type this transition deserves, or None.

        ``auth_failed`` and ``circuit_open`` are CRITICAL, ``rate_limited`` HIGH; the rules ask a
        CRITICAL alert for quota too without naming it: ``quota_exhausted``.
        """
        if self.after is DeploymentState.CIRCUIT_OPEN:
            return "auth_failed" if self.error_class is ErrorClass.AUTH else "circuit_open"
        if self.after is DeploymentState.RATE_LIMITED:
            return "quota_exhausted" if self.error_class is ErrorClass.QUOTA else "rate_limited"
        return None


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One row of ``GET /v1/status``: health and recent figures of a deployment.

    ``until`` is the seconds left of a break or cooldown (None when there is none);
    ``success_rate`` and the latency percentiles cover the recent window (None without samples).
    """

    deployment: str
    state: DeploymentState
    failures: int
    until: float | None
    last_error: ErrorClass | None
    probe_in_flight: bool
    success_rate: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    samples: int

    @classmethod
    def of(
        cls, deployment: str, record: BreakerRecord, now: float, summary: WindowSummary
    ) -> DeploymentStatus:
        """The row for ``record`` at ``now``, with the recent figures of ``summary``."""
        state = machine.effective_state(record, now)
        return cls(
            deployment=deployment,
            state=state,
            failures=record.failures,
            until=record.until - now if state in _WAITING else None,
            last_error=record.last_error,
            probe_in_flight=record.probe_until is not None and now < record.probe_until,
            success_rate=summary.success_rate,
            p50=summary.p50,
            p95=summary.p95,
            p99=summary.p99,
            samples=summary.samples,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their names, seconds rounded to milliseconds)."""

        def seconds(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "deployment": self.deployment,
            "state": self.state.value,
            "consecutive_failures": self.failures,
            "cooldown_ends_in": seconds(self.until),
            "last_error": None if self.last_error is None else self.last_error.value,
            "probe_in_flight": self.probe_in_flight,
            "success_rate": None if self.success_rate is None else round(self.success_rate, 4),
            "latency": {
                "p50": seconds(self.p50),
                "p95": seconds(self.p95),
                "p99": seconds(self.p99),
            },
            "samples": self.samples,
        }


class CircuitBreaker:
    """Health of one deployment.

    >>> from failover.clock import ManualClock
    >>> clock = ManualClock()
    >>> breaker = CircuitBreaker("groq-llama", BreakerPolicy(failure_threshold=1), clock.now)
    >>> admission = breaker.admit()
    >>> breaker.report(admission, Report(error_class=ErrorClass.SERVER_ERROR)).after
    <DeploymentState.CIRCUIT_OPEN: 'circuit_open'>
    >>> clock.advance(48)
    >>> breaker
    <CircuitBreaker 'groq-llama' OPEN failures=1 reopens_in=12.0s>
    """

    __slots__ = ("_now", "_record", "name", "policy", "stats")

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        now: Callable[[], float],
        *,
        configured: bool = True,
        stats: OutcomeWindow | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.stats = stats if stats is not None else OutcomeWindow()
        self._now = now
        self._record = BreakerRecord(
            state=DeploymentState.AVAILABLE if configured else DeploymentState.NOT_CONFIGURED
        )

    @property
    def record(self) -> BreakerRecord:
        """The stored record (what a shared backend would keep)."""
        return self._record

    @property
    def state(self) -> DeploymentState:
        """The visible state now (``half_open`` included)."""
        return machine.effective_state(self._record, self._now())

    def admit(self, *, probe: bool = False) -> Admission | None:
        """Leave for one attempt now, or None; ``probe=True`` asks for rule 1's early probe."""
        result = machine.admit(self._record, self._now(), self.policy, early=probe)
        self._record = result.record
        if not result.admitted:
            return None
        return Admission(self.name, probe=result.lease is not None, lease=result.lease)

    def report(self, admission: Admission, outcome: Report) -> Transition | None:
        """Feed the outcome of the attempt ``admission`` allowed; the transition it caused."""
        now = self._now()
        result = machine.report(
            self._record,
            now,
            self.policy,
            error_class=outcome.error_class,
            retry_after=outcome.retry_after,
            cancelled=outcome.cancelled,
            lease=admission.lease,
        )
        self._record = result.record
        if self._record.state is not DeploymentState.NOT_CONFIGURED:
            self._sample(now, outcome)
        if result.before is result.after:
            return None
        waiting = result.after in _WAITING
        return Transition(
            deployment=self.name,
            before=result.before,
            after=result.after,
            error_class=None if outcome.cancelled else outcome.error_class,
            seconds=self._record.until - now if waiting else None,
        )

    def _sample(self, now: float, outcome: Report) -> None:
        if outcome.cancelled:
            self.stats.add(now, ok=None, latency=outcome.latency)
        elif outcome.error_class is None:
            self.stats.add(now, ok=True, latency=outcome.latency)
        elif machine.EFFECTS[outcome.error_class] is Effect.NONE:
            return  # the request's fault says nothing about the deployment
        else:
            # A timeout took at least its elapsed time; a quick error tells nothing of latency.
            timed_out = outcome.error_class is ErrorClass.TIMEOUT
            self.stats.add(now, ok=False, latency=outcome.latency if timed_out else None)

    def status(self) -> DeploymentStatus:
        """This deployment's row of ``/v1/status`` now."""
        now = self._now()
        record = self._record
        return DeploymentStatus.of(self.name, record, now, self.stats.summary(now))

    def __repr__(self) -> str:
        now = self._now()
        record = self._record
        state = machine.effective_state(record, now)
        probing = record.probe_until is not None and now < record.probe_until
        parts = [f"<CircuitBreaker {self.name!r}"]
        if state is DeploymentState.NOT_CONFIGURED:
            return f"{parts[0]} NOT_CONFIGURED>"
        if state is DeploymentState.CIRCUIT_OPEN:
            parts += [
                "OPEN",
                f"failures={record.failures}",
                f"reopens_in={record.until - now:.1f}s",
            ]
        elif state is DeploymentState.RATE_LIMITED:
            parts += ["RATE_LIMITED", f"failures={record.failures}"]
            parts.append(f"cooldown_ends_in={record.until - now:.1f}s")
        elif state is DeploymentState.HALF_OPEN:
            parts += ["HALF_OPEN", f"failures={record.failures}"]
            if probing and record.probe_until is not None:
                parts.append(f"probe={record.probe_until - now:.1f}s")
            else:
                parts.append("probe=free")
            probing = False  # already said
        else:
            parts += ["AVAILABLE", f"failures={record.failures}"]
        if record.last_error in machine.HOLDS and state in _WAITING:
            parts.append(f"hold={record.last_error}")
        if probing:
            parts.append("probing")
        return " ".join(parts) + ">"


def announce(
    transition: Transition,
    observer: Callable[[Transition], None] | None,
    logger: logging.Logger,
) -> None:
    """Log a deployment's change of state and tell ``observer``, whose bugs are logged only."""
    logger.info(
        "deployment %r: %s -> %s (%s)",
        transition.deployment,
        transition.before.value,
        transition.after.value,
        transition.error_class.value if transition.error_class else "success",
    )
    if observer is not None:
        try:
            observer(transition)
        except Exception:
            # An observer's bug must not fail the request whose outcome it was told.
            logger.exception("health transition observer failed")
