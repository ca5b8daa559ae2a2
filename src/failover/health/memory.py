"""Provider health kept in this process: the ``memory`` state backend.

:class:`MemoryHealth` implements :class:`failover.health.base.Health` with one
:class:`~failover.health.breaker.CircuitBreaker` per deployment. Every method runs without an
``await`` between reading and writing a record, so on one event loop each call is atomic: two
requests can never both take a half-open probe. Several gateway processes need the Redis backend,
which runs the same :mod:`failover.health.machine` rules in one script per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from failover.clock import Clock
from failover.config import DeploymentConfig, HealthConfig
from failover.health import machine
from failover.health.base import Admission, Plan, Report
from failover.health.breaker import CircuitBreaker, DeploymentStatus, Transition, announce
from failover.health.machine import BreakerPolicy
from failover.health.stats import OutcomeWindow

__all__ = ["MemoryHealth"]

logger = logging.getLogger(__name__)


class MemoryHealth:
    """Per-deployment availability in memory, fed by attempt outcomes.

    ``on_transition`` is called (synchronously) with each :class:`Transition` a report causes, for
    alerts and logs; an exception it raises is logged and does not disturb the request. Outcome
    statistics keep the last ``window_size`` samples no older than ``window_seconds``.

    >>> import asyncio
    >>> from failover.clock import ManualClock
    >>> from failover.config import DeploymentConfig
    >>> gpt = DeploymentConfig(provider="openai", model="gpt-4o-mini", api_key="sk-test")
    >>> health = MemoryHealth(HealthConfig(), {"gpt": gpt}, ManualClock())
    >>> asyncio.run(health.plan(["gpt"]))
    Plan(available=('gpt',), probe=None, retry_after=None)
    """

    def __init__(
        self,
        config: HealthConfig,
        deployments: Mapping[str, DeploymentConfig],
        clock: Clock,
        *,
        on_transition: Callable[[Transition], None] | None = None,
        window_size: int = 256,
        window_seconds: float = 300.0,
    ) -> None:
        self._clock = clock
        self._on_transition = on_transition
        self._breakers = {
            name: CircuitBreaker(
                name,
                BreakerPolicy.from_config(config, deployment),
                clock.now,
                configured=deployment.configured,
                stats=OutcomeWindow(window_size, window_seconds),
            )
            for name, deployment in deployments.items()
        }

    def breaker(self, deployment: str) -> CircuitBreaker:
        """The breaker of ``deployment`` (KeyError naming it when it is unknown)."""
        try:
            return self._breakers[deployment]
        except KeyError:
            raise KeyError(f"unknown deployment {deployment!r}") from None

    async def plan(self, targets: Sequence[str], *, early_probe: bool = True) -> Plan:
        """The targets that admit an attempt now, in order; else the early probe (rule 1)."""
        records = [(name, self.breaker(name).record) for name in targets]
        return machine.plan(records, self._clock.now(), early_probe=early_probe)

    async def admit(self, deployment: str, *, probe: bool = False) -> Admission | None:
        """Leave to start an attempt now, or None; ``probe=True`` asks for the early probe."""
        return self.breaker(deployment).admit(probe=probe)

    async def report(self, admission: Admission, report: Report) -> None:
        """Feed one attempt's outcome to its deployment's health."""
        transition = self.breaker(admission.deployment).report(admission, report)
        if transition is not None:
            announce(transition, self._on_transition, logger)

    def latency_quantile(
        self, deployment: str, q: float, *, running: Sequence[float] = (), min_samples: int = 1
    ) -> float | None:
        """The recent ``q`` latency quantile of ``deployment`` (e.g. 0.95 for adaptive hedging).

        ``running``: elapsed times of its attempts still running (see
        :class:`~failover.health.stats.OutcomeWindow`); None below ``min_samples`` samples.
        """
        return self.breaker(deployment).stats.quantile(
            self._clock.now(), q, running=running, min_samples=min_samples
        )

    def snapshot(self) -> dict[str, DeploymentStatus]:
        """Every deployment's status now, in config order (the rows of ``GET /v1/status``)."""
        return {name: breaker.status() for name, breaker in self._breakers.items()}

    async def status(self) -> dict[str, DeploymentStatus]:
        """:meth:`snapshot`, behind the same ``await`` a shared backend will need."""
        return self.snapshot()

    def __repr__(self) -> str:
        states = ", ".join(f"{name}={b.state.value}" for name, b in self._breakers.items())
        return f"<MemoryHealth {states}>"
