"""Recent outcomes of one deployment: success rate and latency percentiles over a bounded window.

The window keeps at most ``size`` samples and forgets those older than ``horizon`` seconds, so its
memory is bounded whatever the traffic and its figures say "recently", not "since start".

Latency samples feed ``/v1/status`` and adaptive hedging (``hedge_after: auto`` waits for a
deployment's p95). An attempt that hit its own timeout counts as a sample of its elapsed time. An
attempt failover cancelled, and one still running (the caller passes their elapsed times as
``running``), is a *censored* sample: it took at least its elapsed time, how much longer nobody
knows. Such a sample counts, at its elapsed time, in a quantile it is above (computed over the
complete samples): leaving those out would make the slow tail vanish from p95 exactly when hedging
cuts it short. One below that quantile is left out: a hedge cancelled 50 ms after it started tells
only that it takes at least 50 ms, and counting it as a 50 ms answer would drag the estimate down.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["OutcomeWindow", "WindowSummary"]


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """The window's figures at one moment; ``None`` where there is no sample to tell."""

    samples: int
    success_rate: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class OutcomeWindow:
    """A bounded window of recent (time, outcome, latency) samples.

    ``ok`` is True for a success, False for a failure the deployment is to blame for, None for a
    sample that only tells latency (a cancelled attempt). ``latency`` is None when the outcome says
    nothing about how long a success takes (a connection refused at once).

    >>> window = OutcomeWindow(size=3)
    >>> for latency in (0.1, 0.2, 0.3, 0.4):
    ...     window.add(0.0, ok=True, latency=latency)
    >>> len(window), window.quantile(0.0, 0.5)
    (3, 0.3)
    """

    __slots__ = ("_samples", "horizon", "size")

    def __init__(self, size: int = 256, horizon: float = 300.0) -> None:
        if size < 1 or horizon <= 0:
            raise ValueError("an outcome window needs size >= 1 and horizon > 0")
        self.size = size
        self.horizon = horizon
        self._samples: deque[tuple[float, bool | None, float | None]] = deque(maxlen=size)

    def add(self, now: float, *, ok: bool | None, latency: float | None) -> None:
        """Record one attempt's outcome at ``now``."""
        self._prune(now)
        self._samples.append((now, ok, None if latency is None else max(0.0, latency)))

    def _prune(self, now: float) -> None:
        oldest = now - self.horizon
        while self._samples and self._samples[0][0] < oldest:
            self._samples.popleft()

    def _recent(self, now: float) -> list[tuple[float, bool | None, float | None]]:
        oldest = now - self.horizon
        return [sample for sample in self._samples if sample[0] >= oldest]

    def success_rate(self, now: float) -> float | None:
        """Successes over successes and failures in the window; None without any."""
        outcomes = [ok for _, ok, _ in self._recent(now) if ok is not None]
        return sum(outcomes) / len(outcomes) if outcomes else None

    def quantile(
        self, now: float, q: float, *, running: Sequence[float] = (), min_samples: int = 1
    ) -> float | None:
        """The ``q`` latency quantile (nearest rank) in the window; None without samples.

        ``running`` are the elapsed times of attempts still running (censored samples, like
        cancelled ones); with fewer than ``min_samples`` samples counted the answer is None.
        """
        return self.quantiles(now, (q,), running=running, min_samples=min_samples)[0]

    def quantiles(
        self,
        now: float,
        qs: Sequence[float],
        *,
        running: Sequence[float] = (),
        min_samples: int = 1,
    ) -> tuple[float | None, ...]:
        """Several latency quantiles at once (one sort of the complete samples)."""
        oldest = now - self.horizon
        complete: list[float] = []
        censored: list[float] = [max(0.0, elapsed) for elapsed in running]
        for at, ok, latency in self._samples:
            if latency is None or at < oldest:
                continue
            if ok is None:
                censored.append(latency)
            else:
                complete.append(latency)
        complete.sort()
        if not censored:
            return tuple(_rank(complete, q, min_samples) for q in qs)
        censored.sort()
        answers: list[float | None] = []
        for q in qs:
            floor = _rank(complete, q, 1)
            # Censored samples above the complete samples' quantile are in the tail whatever
            # their true value: they count; those below it tell nothing yet (module docstring).
            above = censored if floor is None else censored[bisect.bisect_right(censored, floor) :]
            values = sorted(complete + above) if above else complete
            answers.append(_rank(values, q, min_samples))
        return tuple(answers)

    def summary(self, now: float) -> WindowSummary:
        """Sample count, success rate and latency p50/p95/p99 at ``now``."""
        p50, p95, p99 = self.quantiles(now, (0.5, 0.95, 0.99))
        return WindowSummary(
            samples=len(self._recent(now)),
            success_rate=self.success_rate(now),
            p50=p50,
            p95=p95,
            p99=p99,
        )

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        return f"<OutcomeWindow samples={len(self._samples)}/{self.size} horizon={self.horizon:g}s>"


def _rank(values: Sequence[float], q: float, min_samples: int) -> float | None:
    """The nearest-rank ``q`` quantile of sorted ``values``; None below ``min_samples`` values."""
    if not values or len(values) < min_samples:
        return None
    return values[min(len(values), max(1, math.ceil(q * len(values)))) - 1]
