"""The retry budget: how many extra attempts (retries and hedges) a route may add under load.

Retries and hedges help a request when failures are rare and hurt everyone when they are not: a
struggling provider that sees every request two or three times is pushed over. Like Envoy's retry
budget and gRPC's retry throttling, a route may add extra attempts only up to ``ratio`` of its
first attempts over a sliding window, with a floor of ``min_per_second`` extra attempts per
second so that a quiet route can still retry. A first attempt is any attempt that is not extra:
the request's first one, and the first attempt of each fallback target (moving to the next target
after a failure is never refused).

The class is a pure state machine on an injected ``now``; memory is a fixed ring of per-bucket
counters, whatever the traffic.
"""

from __future__ import annotations

import math

from failover.config import RetryBudgetConfig

__all__ = ["RetryBudget"]


class RetryBudget:
    """Extra attempts allowed in the last ``window_seconds``: ``max(ratio * firsts, floor)``.

    The window is ``buckets`` slices of equal width; it slides one slice at a time, so it covers
    between ``(buckets - 1) / buckets`` and all of ``window_seconds``.

    >>> budget = RetryBudget(ratio=0.5, min_per_second=0, window_seconds=10)
    >>> for _ in range(4):
    ...     budget.record_first(now=0.0)
    >>> [budget.try_spend(now=1.0) for _ in range(3)]
    [True, True, False]
    >>> budget
    <RetryBudget firsts=4 extras=2 allowed=2>
    """

    __slots__ = (
        "_epoch",
        "_extras",
        "_firsts",
        "_floor",
        "_ratio",
        "_total_extras",
        "_total_firsts",
        "_width",
    )

    def __init__(
        self,
        ratio: float,
        min_per_second: float,
        window_seconds: float,
        *,
        buckets: int = 10,
    ) -> None:
        if window_seconds <= 0 or buckets < 1:
            raise ValueError("a retry budget needs a positive window and at least one bucket")
        self._ratio = ratio
        self._floor = min_per_second * window_seconds
        self._width = window_seconds / buckets
        self._firsts = [0] * buckets
        self._extras = [0] * buckets
        self._total_firsts = 0
        self._total_extras = 0
        self._epoch: int | None = None  # the newest slice, counted in widths from time zero

    @classmethod
    def from_config(cls, config: RetryBudgetConfig) -> RetryBudget:
        """The budget a route's ``retry_budget`` section describes."""
        return cls(config.ratio, config.min_per_second, config.window_seconds)

    def record_first(self, now: float) -> None:
        """Count a first attempt (it raises the allowance by ``ratio``)."""
        slot = self._slot(now)
        self._firsts[slot] += 1
        self._total_firsts += 1

    def allows_extra(self, now: float) -> bool:
        """Whether one more extra attempt fits in the budget now (nothing is counted)."""
        self._slot(now)
        return self._total_extras < self._allowed()

    def record_extra(self, now: float) -> None:
        """Count an extra attempt that was started."""
        slot = self._slot(now)
        self._extras[slot] += 1
        self._total_extras += 1

    def try_spend(self, now: float) -> bool:
        """Count an extra attempt if it fits; False when the budget is spent."""
        if not self.allows_extra(now):
            return False
        self.record_extra(now)
        return True

    def _allowed(self) -> float:
        return max(self._ratio * self._total_firsts, self._floor)

    def _slot(self, now: float) -> int:
        """The ring index for ``now``, after dropping the slices that left the window."""
        epoch = math.floor(now / self._width)
        size = len(self._firsts)
        if self._epoch is None or epoch > self._epoch:
            # Clear the slices this step moves over: they hold counts a whole window old.
            stale = size if self._epoch is None else min(epoch - self._epoch, size)
            for step in range(stale):
                index = (epoch - step) % size
                self._total_firsts -= self._firsts[index]
                self._total_extras -= self._extras[index]
                self._firsts[index] = 0
                self._extras[index] = 0
            self._epoch = epoch
        # A now older than the newest slice (it cannot happen on a monotonic clock) is counted
        # in the newest one.
        return self._epoch % size

    def __repr__(self) -> str:
        return (
            f"<RetryBudget firsts={self._total_firsts} extras={self._total_extras} "
            f"allowed={self._allowed():g}>"
        )
