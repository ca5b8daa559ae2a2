"""``hedge_after: auto``: hedge when the running attempt passes its deployment's recent p95.

This is The Tail at Scale's recipe (Dean and Barroso, 2013): a request sent again once the first
copy has taken longer than the 95th percentile cut Google's 99.9th percentile from 1,800 ms to
74 ms for 2% more requests. The delay is read per deployment from the health state's recent
latencies (:class:`~failover.health.base.LatencyStats`) when the attempt starts, and clamped to
the bounds of the route's :class:`~failover.engine.route.HedgePolicy`; the retry budget still
caps how many hedges start.

Two things keep the estimate honest while hedging cuts the tail short:

- an attempt cancelled because another won is a sample of *at least* its elapsed time (health's
  :class:`~failover.health.stats.OutcomeWindow` counts it when it is in the tail);
- an attempt still running is one too: :class:`HedgeDelays` keeps the start of every running
  attempt per deployment (this process only) and passes their elapsed times along. A deployment
  that suddenly stalls thus raises its own p95 before any of its stalled attempts has ended.

Cold start: below :data:`MIN_SAMPLES` samples the delay is the upper bound. Until failover knows
what "late" means for a deployment, hedging is blind, and LLM latencies range from a fraction of a
second to a minute by model and prompt: any fixed guess would hedge most calls of a slow model,
doubling its cost. The upper bound is the longest wait the route's owner accepted. A route too
quiet to gather 20 samples in the health window (5 minutes) keeps hedging at its upper bound, so
such a route should set ``hedge_bounds`` (or a fixed ``hedge_after``).
"""

from __future__ import annotations

from collections.abc import Hashable

from failover.engine.route import HedgePolicy
from failover.health.base import LatencyStats

__all__ = ["AUTO_QUANTILE", "MIN_SAMPLES", "HedgeDelays"]

AUTO_QUANTILE = 0.95
"""The latency quantile ``hedge_after: auto`` waits for."""

MIN_SAMPLES = 20
"""Samples a deployment needs before its quantile is trusted (one in 20 is above p95)."""


class HedgeDelays:
    """The attempts running now, per deployment, and the delay ``hedge_after: auto`` waits.

    ``stats`` is the health backend when it keeps latencies, else None (every delay is then the
    cold-start one). The engine calls :meth:`started` and :meth:`ended` around every attempt;
    times are the event loop's, given by the caller.

    >>> from failover.engine.route import HedgeMode, HedgePolicy
    >>> delays = HedgeDelays(None)
    >>> delays.started("gpt", "attempt-1", 0.0)
    >>> delays.delay("gpt", HedgePolicy(HedgeMode.AUTO, 10.0, (0.2, 10.0)), 1.0), delays
    (10.0, <HedgeDelays running=1>)
    """

    __slots__ = ("_running", "_stats")

    def __init__(self, stats: LatencyStats | None) -> None:
        self._stats = stats
        self._running: dict[str, dict[Hashable, float]] = {}

    def started(self, deployment: str, attempt: Hashable, at: float) -> None:
        """``attempt`` of ``deployment`` started at loop time ``at``."""
        running = self._running.get(deployment)
        if running is None:
            running = self._running[deployment] = {}
        running[attempt] = at

    def ended(self, deployment: str, attempt: Hashable) -> None:
        """``attempt`` ended (its latency now reaches health); calling it twice is harmless."""
        running = self._running.get(deployment)
        if running is not None:
            running.pop(attempt, None)

    def delay(self, deployment: str, policy: HedgePolicy, now: float) -> float:
        """Seconds an attempt of ``deployment`` starting at ``now`` may run before the next is
        hedged, under the ``auto`` ``policy``: its bounds, and its cold-start delay."""
        bounds, cold = policy.bounds, policy.delay
        if bounds is None or cold is None:
            raise ValueError(f"{policy!r} is not adaptive")
        low, high = bounds
        if self._stats is None:
            return cold
        starts = self._running.get(deployment)
        running = [now - at for at in starts.values()] if starts else ()
        p95 = self._stats.latency_quantile(
            deployment, AUTO_QUANTILE, running=running, min_samples=MIN_SAMPLES
        )
        if p95 is None:
            return cold
        return min(high, max(low, p95))

    def __len__(self) -> int:
        return sum(len(running) for running in self._running.values())

    def __repr__(self) -> str:
        return f"<HedgeDelays running={len(self)}>"
