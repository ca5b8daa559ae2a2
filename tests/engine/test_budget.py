"""RetryBudget: a ratio of first attempts over a sliding window, with a floor; bounded memory."""

from __future__ import annotations

import pytest

from failover.config import RetryBudgetConfig
from failover.engine import RetryBudget


def test_extras_are_capped_at_the_ratio_of_first_attempts() -> None:
    """With ratio 0.2 and no floor, 10 first attempts allow 2 extra ones."""
    budget = RetryBudget(ratio=0.2, min_per_second=0, window_seconds=10)
    for _ in range(10):
        budget.record_first(now=1.0)
    assert [budget.try_spend(now=2.0) for _ in range(3)] == [True, True, False]
    assert repr(budget) == "<RetryBudget firsts=10 extras=2 allowed=2>"


def test_the_floor_allows_extras_on_a_quiet_route() -> None:
    """min_per_second * window_seconds extra attempts are allowed even with no traffic."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.5, window_seconds=4)
    assert [budget.try_spend(now=0.0) for _ in range(3)] == [True, True, False]


def test_the_window_slides() -> None:
    """Counts older than the window are forgotten, restoring the allowance."""
    budget = RetryBudget(ratio=1.0, min_per_second=0, window_seconds=10)
    budget.record_first(now=0.0)
    assert budget.try_spend(now=0.5)
    assert not budget.try_spend(now=5.0)
    # 10 s later the first attempt and the extra have both left the window.
    assert not budget.allows_extra(now=10.5)
    budget.record_first(now=10.5)
    assert budget.try_spend(now=10.6)
    assert repr(budget) == "<RetryBudget firsts=1 extras=1 allowed=1>"


def test_a_long_silence_clears_everything() -> None:
    """After more than a window of silence every bucket is empty."""
    budget = RetryBudget(ratio=1.0, min_per_second=0, window_seconds=1)
    for step in range(100):
        budget.record_first(now=step * 0.01)
    budget.record_extra(now=0.5)
    assert budget.allows_extra(now=0.9)
    assert not budget.allows_extra(now=1000.0)
    assert repr(budget) == "<RetryBudget firsts=0 extras=0 allowed=0>"


def test_memory_is_bounded_whatever_the_traffic() -> None:
    """The budget keeps one counter pair per bucket, never one entry per request."""
    budget = RetryBudget(ratio=0.2, min_per_second=1, window_seconds=10, buckets=5)
    for step in range(100_000):
        budget.record_first(now=step * 0.001)
    # Private on purpose: the size of the ring is the point of this test.
    assert len(budget._firsts) == len(budget._extras) == 5


def test_from_config() -> None:
    """A route's retry_budget section builds the budget it describes."""
    budget = RetryBudget.from_config(RetryBudgetConfig(ratio=0.5, min_per_second=0))
    budget.record_first(now=0.0)
    budget.record_first(now=0.0)
    assert budget.try_spend(now=0.0)
    assert not budget.try_spend(now=0.0)


def test_a_bad_window_is_refused() -> None:
    """A window of zero seconds makes no sense."""
    with pytest.raises(ValueError, match="positive window"):
        RetryBudget(ratio=0.1, min_per_second=1, window_seconds=0)
