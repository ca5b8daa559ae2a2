"""OutcomeWindow: success rate and latency percentiles over a bounded recent window."""

from __future__ import annotations

import pytest

from failover.health.stats import OutcomeWindow, WindowSummary


def test_empty_window_has_no_figures() -> None:
    """Without samples every figure is None, not zero."""
    assert OutcomeWindow().summary(0.0) == WindowSummary(0, None, None, None, None)


def test_percentiles_are_nearest_rank() -> None:
    """p50/p95/p99 of 1..100 ms are 50, 95 and 99 ms."""
    window = OutcomeWindow(size=100)
    for ms in range(100, 0, -1):
        window.add(0.0, ok=True, latency=ms / 1000)
    assert window.quantiles(0.0, (0.5, 0.95, 0.99, 1.0, 0.0)) == (0.05, 0.095, 0.099, 0.1, 0.001)


def test_success_rate_ignores_latency_only_samples() -> None:
    """Cancelled attempts (ok None) give latency, not outcome."""
    window = OutcomeWindow()
    window.add(0.0, ok=True, latency=1.0)
    window.add(0.0, ok=False, latency=None)
    window.add(0.0, ok=None, latency=7.0)
    summary = window.summary(0.0)
    assert summary.success_rate == 0.5
    assert summary.samples == 3
    assert window.quantile(0.0, 1.0) == 7.0


def test_window_is_bounded_in_count() -> None:
    """However many outcomes arrive, only the last ``size`` are kept."""
    window = OutcomeWindow(size=50)
    for i in range(10_000):
        window.add(i * 0.001, ok=i % 2 == 0, latency=float(i))
    assert len(window) == 50
    assert window.quantile(10.0, 0.0) == 9950.0
    assert window.success_rate(10.0) == 0.5


def test_window_forgets_old_samples() -> None:
    """Samples older than the horizon no longer count, and are dropped on the next add."""
    window = OutcomeWindow(horizon=60.0)
    window.add(0.0, ok=False, latency=5.0)
    window.add(30.0, ok=True, latency=1.0)
    assert window.success_rate(59.0) == 0.5
    assert window.success_rate(61.0) == 1.0
    assert window.quantile(61.0, 1.0) == 1.0
    assert window.summary(100.0).samples == 0
    window.add(100.0, ok=True, latency=2.0)
    assert len(window) == 1


def test_negative_latency_is_clamped() -> None:
    """A latency below zero (clock skew) counts as zero."""
    window = OutcomeWindow()
    window.add(0.0, ok=True, latency=-1.0)
    assert window.quantile(0.0, 0.5) == 0.0


@pytest.mark.parametrize(("size", "horizon"), [(0, 10.0), (10, 0.0)])
def test_window_rejects_no_room(size: int, horizon: float) -> None:
    """A window must be able to hold something."""
    with pytest.raises(ValueError, match="size >= 1"):
        OutcomeWindow(size, horizon)


def test_repr() -> None:
    """The repr shows fill and horizon."""
    window = OutcomeWindow(size=4, horizon=30)
    window.add(0.0, ok=True, latency=0.1)
    assert repr(window) == "<OutcomeWindow samples=1/4 horizon=30s>"


def test_censored_samples_count_only_above_the_complete_quantile() -> None:
    """A cancelled attempt below the complete samples' p95 is left out; one above it counts."""
    window = OutcomeWindow()
    for latency in [0.5] * 18 + [1.0] * 2:
        window.add(0.0, ok=True, latency=latency)
    for _ in range(30):
        window.add(0.0, ok=None, latency=0.05)  # hedges that lost soon after they started
    assert window.quantile(0.0, 0.95) == 1.0
    window.add(0.0, ok=None, latency=4.0)
    window.add(0.0, ok=None, latency=4.0)
    assert window.quantile(0.0, 0.95) == 4.0


def test_running_attempts_count_like_censored_samples() -> None:
    """Elapsed times of running attempts lift the quantile when above it, and count as samples."""
    window = OutcomeWindow()
    for _ in range(19):
        window.add(0.0, ok=True, latency=0.1)
    assert window.quantile(0.0, 0.95, min_samples=20) is None
    assert window.quantile(0.0, 0.95, running=[0.01], min_samples=20) is None
    assert window.quantile(0.0, 0.95, running=[3.0], min_samples=20) == 0.1
    assert window.quantile(0.0, 0.95, running=[3.0, 3.0], min_samples=20) == 3.0
