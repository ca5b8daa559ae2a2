"""What the engine asks of provider health, whatever keeps it (memory, Redis).

Per request the engine makes one :meth:`Health.plan` call (which targets may be tried, in order),
one :meth:`Health.admit` before each attempt (cheap unless the deployment is half-open, when it
takes the single probe lease), and one :meth:`Health.report` after each attempt with what the
upstream produced. Attempts that failover itself ended (a winner elsewhere, the deadline, a client
that left) are reported as cancelled and change nothing but the probe lease they held.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from failover.errors import ErrorClass

__all__ = ["Admission", "DeploymentState", "Health", "LatencyStats", "Plan", "Report"]


class DeploymentState(enum.StrEnum):
    AVAILABLE = "available"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    HALF_OPEN = "half_open"
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True, slots=True)
class Plan:
    """The targets a request may use now, in route order.

    ``available`` lists deployments that admit traffic (half-open ones whose probe slot is free
    included). When it is empty, ``probe`` names the deployment whose break or cooldown ends
    soonest and may be tried early as its half-open probe (never one cooling down for ``auth`` or
    ``quota``), and ``retry_after`` the seconds until the soonest break ends.
    """

    available: tuple[str, ...]
    probe: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """Leave to start one attempt; ``probe`` is true when it holds the half-open lease.

    ``lease`` identifies that lease (it is the time the lease expires): pass the admission back to
    :meth:`Health.report` unchanged, so that a late report of an expired lease cannot release or
    decide the probe a newer lease holds.
    """

    deployment: str
    probe: bool = False
    lease: float | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """What one attempt's upstream produced: success (``error_class`` None), or a failure.

    ``cancelled`` marks an attempt failover ended itself; it changes no health.
    ``latency`` is the attempt's duration in seconds (a lower bound when cancelled).
    """

    error_class: ErrorClass | None = None
    retry_after: float | None = None
    latency: float = 0.0
    cancelled: bool = False


class Health(Protocol):
    """Per-deployment availability, fed by attempt outcomes."""

    async def plan(self, targets: Sequence[str], *, early_probe: bool = True) -> Plan: ...

    async def admit(self, deployment: str, *, probe: bool = False) -> Admission | None:
        """Leave to start an attempt now, or None when the deployment no longer admits one.

        ``probe=True`` asks for the early half-open probe of :attr:`Plan.probe`.
        """
        ...

    async def report(self, admission: Admission, report: Report) -> None: ...


@runtime_checkable
class LatencyStats(Protocol):
    """Recent latencies per deployment, which ``hedge_after: auto`` reads (optional for a
    :class:`Health`; both backends keep them). See :class:`~failover.health.stats.OutcomeWindow`.
    """

    def latency_quantile(
        self, deployment: str, q: float, *, running: Sequence[float] = (), min_samples: int = 1
    ) -> float | None:
        """The recent ``q`` quantile; ``running`` are elapsed times of attempts still running;
        None with fewer than ``min_samples`` samples."""
        ...
