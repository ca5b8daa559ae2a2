"""When a failed attempt may be retried on its own deployment, and how long to wait first.

Pure functions of the failure, the counts and an injected ``now`` and randomness; the runners do
the waiting. The retry budget (:mod:`failover.engine.budget`) is checked by the runners, at the
moment an extra attempt would start.
"""

from __future__ import annotations

import random

from failover.config import RetryConfig
from failover.errors import ErrorClass, UpstreamError

__all__ = ["backoff_delay", "retry_wait"]


def backoff_delay(
    retry: RetryConfig,
    retries_done: int,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """The wait before the retry that follows ``retries_done`` earlier retries.

    ``backoff * 2**retries_done``, capped at ``max_backoff``. With ``jitter`` it is *equal
    jitter*: half of that for sure and the other half drawn uniformly, so that a retry never
    lands on a failing upstream at once while a crowd of requests still spreads out. Never shorter
    than the Retry-After the provider sent.

    >>> config = RetryConfig(backoff=0.5, max_backoff=4, jitter=False)
    >>> [backoff_delay(config, n, random.Random(0)) for n in range(4)]
    [0.5, 1.0, 2.0, 4.0]
    >>> backoff_delay(config, 0, random.Random(0), retry_after=3.0)
    3.0
    """
    delay = min(retry.backoff * 2.0**retries_done, retry.max_backoff)
    if retry.jitter:
        half = delay / 2.0
        delay = half + rng.uniform(0.0, half)
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


def retry_wait(
    error: UpstreamError,
    *,
    retries_done: int,
    max_retries: int,
    other_target_available: bool,
    retry: RetryConfig,
    rng: random.Random,
    now: float,
    deadline_at: float,
) -> float | None:
    """The wait before retrying after ``error`` on the same deployment, or None: move on.

    rule 2 and the failure table: the class must be retryable; a ``rate_limit`` is retried
    only when no other target is available; ``max_retries`` must not be used up; and the wait must
    end before the deadline (a wait that would end past it is not taken at all).

    >>> from failover.errors import UpstreamStatusError
    >>> error = UpstreamStatusError("overloaded", status=529, error_class=ErrorClass.SERVER_ERROR)
    >>> retry_wait(error, retries_done=0, max_retries=1, other_target_available=True,
    ...            retry=RetryConfig(backoff=0.5, jitter=False), rng=random.Random(0),
    ...            now=0.0, deadline_at=5.0)
    0.5
    """
    error_class = error.error_class
    if not error_class.retryable or retries_done >= max_retries:
        return None
    if error_class is ErrorClass.RATE_LIMIT and other_target_available:
        return None
    wait = backoff_delay(retry, retries_done, rng, error.retry_after)
    if now + wait >= deadline_at:
        return None
    return wait
