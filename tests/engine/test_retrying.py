"""Backoff and the retry decision: pure functions of the failure, counts, now and randomness."""

from __future__ import annotations

import random

import pytest

from failover.config import RetryConfig
from failover.engine import backoff_delay, retry_wait
from failover.errors import ErrorClass, UpstreamError, UpstreamStatusError

FIXED = RetryConfig(backoff=0.25, max_backoff=1.0, jitter=False)


def error(error_class: ErrorClass, retry_after: float | None = None) -> UpstreamError:
    return UpstreamStatusError("x", error_class=error_class, retry_after=retry_after)


def wait(
    failure: UpstreamError,
    *,
    retries_done: int = 0,
    max_retries: int = 3,
    other: bool = False,
    now: float = 0.0,
    deadline_at: float = 60.0,
) -> float | None:
    return retry_wait(
        failure,
        retries_done=retries_done,
        max_retries=max_retries,
        other_target_available=other,
        retry=FIXED,
        rng=random.Random(0),
        now=now,
        deadline_at=deadline_at,
    )


def test_backoff_doubles_up_to_the_cap() -> None:
    """backoff * 2**n, capped at max_backoff."""
    assert [backoff_delay(FIXED, n, random.Random(0)) for n in range(5)] == [
        0.25,
        0.5,
        1.0,
        1.0,
        1.0,
    ]


def test_equal_jitter_keeps_half_for_sure() -> None:
    """With jitter a wait lies between half and all of the computed backoff."""
    config = RetryConfig(backoff=1.0, max_backoff=8.0, jitter=True)
    rng = random.Random(42)
    waits = [backoff_delay(config, 2, rng) for _ in range(1000)]
    assert min(waits) >= 2.0
    assert max(waits) <= 4.0
    assert max(waits) - min(waits) > 1.5  # it does spread


def test_retry_after_is_a_floor() -> None:
    """Never shorter than the Retry-After the provider sent, even past max_backoff."""
    assert backoff_delay(FIXED, 0, random.Random(0), retry_after=3.0) == 3.0
    assert backoff_delay(FIXED, 2, random.Random(0), retry_after=0.1) == 1.0


@pytest.mark.parametrize(
    ("error_class", "retried"),
    [
        (ErrorClass.CONNECTION, True),
        (ErrorClass.TIMEOUT, True),
        (ErrorClass.RATE_LIMIT, True),
        (ErrorClass.SERVER_ERROR, True),
        (ErrorClass.MALFORMED, True),
        (ErrorClass.QUOTA, False),
        (ErrorClass.AUTH, False),
        (ErrorClass.CONTEXT_OVERFLOW, False),
        (ErrorClass.BAD_REQUEST, False),
        (ErrorClass.NOT_FOUND, False),
    ],
)
def test_only_retryable_classes_are_retried(error_class: ErrorClass, retried: bool) -> None:
    """The failure table's "retry same deployment" column."""
    assert (wait(error(error_class)) is not None) is retried


def test_rate_limit_is_retried_only_when_no_other_target_is_available() -> None:
    """A 429 goes to another target when there is one; a 500 is retried either way."""
    assert wait(error(ErrorClass.RATE_LIMIT), other=True) is None
    assert wait(error(ErrorClass.RATE_LIMIT, retry_after=2.0), other=False) == 2.0
    assert wait(error(ErrorClass.SERVER_ERROR), other=True) == 0.25


def test_max_retries_is_a_cap() -> None:
    """No retry once max_retries are used up."""
    assert wait(error(ErrorClass.SERVER_ERROR), retries_done=2, max_retries=3) == 1.0
    assert wait(error(ErrorClass.SERVER_ERROR), retries_done=3, max_retries=3) is None
    assert wait(error(ErrorClass.SERVER_ERROR), max_retries=0) is None


def test_a_wait_ending_past_the_deadline_is_not_taken() -> None:
    """The wait must end before the deadline, else no retry at all."""
    assert wait(error(ErrorClass.SERVER_ERROR), now=4.0, deadline_at=4.3) == 0.25
    assert wait(error(ErrorClass.SERVER_ERROR), now=4.0, deadline_at=4.25) is None
    assert wait(error(ErrorClass.RATE_LIMIT, retry_after=10.0), now=0.0, deadline_at=5.0) is None
