"""Inbound rate limits: a pure GCRA decision, and the in-memory limiter built on it.

``server.rate_limits`` gives each path a limit (``paths``, else ``default``); each client (its
key's fingerprint, or its address without auth) has its own budget per path. The decision is the
Generic Cell Rate Algorithm (a token bucket kept as one number per client and path, the
*theoretical arrival time*): ``100/minute`` lets a client send 100 requests at once, then one
every 0.6 s, and says exactly how long a refused client must wait (Retry-After).

:func:`gcra` is pure (it takes ``now``); :class:`LocalLimiter` keeps the arrival times of one
process in a dict, dropping those in the past; the Redis limiter
(:mod:`failover.server.shared_limits`) runs the same decision inside Redis for a fleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from failover.config import RateLimit, RateLimitsConfig

__all__ = ["Decision", "LocalLimiter", "Rate", "gcra", "rates_for"]

_SLACK = 1e-6
"""Seconds of rounding forgiven: a burst of 100 spaced by 0.6 s sums to 60 s plus float error."""


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``period`` seconds; ``interval`` is the steady spacing."""

    count: int
    period: float

    @property
    def interval(self) -> float:
        return self.period / self.count

    @classmethod
    def of(cls, limit: RateLimit) -> Rate:
        return cls(limit.count, limit.per_seconds)

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


class Decision(NamedTuple):
    """Allowed or not, the arrival time to keep, and the seconds to wait when refused."""

    allowed: bool
    tat: float
    retry_after: float


def gcra(tat: float | None, now: float, rate: Rate) -> Decision:
    """Decide one request at ``now`` given the stored theoretical arrival time ``tat``.

    >>> rate = Rate(2, 10.0)                      # 2 per 10 s: a burst of 2, then one per 5 s
    >>> first = gcra(None, 0.0, rate); first
    Decision(allowed=True, tat=5.0, retry_after=0.0)
    >>> second = gcra(first.tat, 0.0, rate); second.allowed
    True
    >>> gcra(second.tat, 1.0, rate)
    Decision(allowed=False, tat=10.0, retry_after=4.0)
    """
    base = tat if tat is not None and tat > now else now
    new = base + rate.interval
    wait = new - rate.period - now
    if wait > _SLACK:
        return Decision(False, base, wait)
    return Decision(True, new, 0.0)


def rates_for(config: RateLimitsConfig | None, paths: list[str]) -> dict[str, Rate | None]:
    """Each path's limit: its own from ``paths``, else ``default``, else None (unlimited)."""
    if config is None:
        return dict.fromkeys(paths)
    own: Mapping[str, RateLimit] = config.paths
    rates: dict[str, Rate | None] = {}
    for path in paths:
        limit = own.get(path, config.default)
        rates[path] = Rate.of(limit) if limit is not None else None
    return rates


class LocalLimiter:
    """GCRA budgets of this process, keyed by ``client|path``.

    Memory stays bounded: when more than ``max_keys`` budgets are kept, those whose arrival time
    is past (a client back to a full budget) are dropped, and if that is not enough the oldest.

    >>> limiter = LocalLimiter()
    >>> [limiter.check("key_1|/v1/models", Rate(1, 60.0), now=0.0) for _ in range(2)]
    [None, 60.0]
    """

    __slots__ = ("_max_keys", "_tats")

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tats: dict[str, float] = {}
        self._max_keys = max_keys

    def check(self, key: str, rate: Rate, now: float) -> float | None:
        """None when the request may go on, else the seconds the client must wait."""
        tats = self._tats
        decision = gcra(tats.get(key), now, rate)
        if not decision.allowed:
            return decision.retry_after
        tats[key] = decision.tat
        if len(tats) > self._max_keys:
            self._prune(now)
        return None

    def _prune(self, now: float) -> None:
        tats = self._tats
        for key in [key for key, tat in tats.items() if tat <= now]:
            del tats[key]
        excess = len(tats) - self._max_keys // 2
        if excess > 0:
            # Still full of active clients: forget the ones with the smallest debt first.
            for key in sorted(tats, key=tats.__getitem__)[:excess]:
                del tats[key]

    def __len__(self) -> int:
        return len(self._tats)

    def __repr__(self) -> str:
        return f"<LocalLimiter keys={len(self._tats)}>"
