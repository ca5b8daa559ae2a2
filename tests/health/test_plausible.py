"""What a stored record may hold (machine.plausible), and the longest wait a provider may ask."""

from __future__ import annotations

import dataclasses
import math

import pytest

from failover.errors import ErrorClass
from failover.health import machine
from failover.health.base import DeploymentState
from failover.health.machine import MAX_FAILURES, MAX_RETRY_AFTER, BreakerPolicy, BreakerRecord

S = DeploymentState
POLICY = BreakerPolicy(recovery_seconds=30, max_recovery_seconds=120, probe_lease_seconds=10)
NOW = 1_700_000_000.0
OPEN = BreakerRecord(S.CIRCUIT_OPEN, failures=5, until=NOW + 30, break_seconds=30.0)


def test_records_the_machine_leaves_are_plausible() -> None:
    """Fresh, open, cooling down, probing: every record the rules write passes."""
    assert machine.plausible(BreakerRecord(), NOW, POLICY)
    assert machine.plausible(OPEN, NOW, POLICY)
    assert machine.plausible(dataclasses.replace(OPEN, probe_until=NOW + 10), NOW, POLICY)
    cooling = BreakerRecord(
        S.RATE_LIMITED, until=NOW + MAX_RETRY_AFTER, last_error=ErrorClass.QUOTA
    )
    assert machine.plausible(cooling, NOW, POLICY)
    assert machine.plausible(dataclasses.replace(OPEN, until=NOW - 1e6), NOW, POLICY)  # long past


@pytest.mark.parametrize(
    "change",
    [
        {"probe_until": math.nan},
        {"probe_until": math.inf},
        {"probe_until": NOW + 11},  # longer than one lease
        {"probe_until": -1.0},
        {"until": 1e300},
        {"until": math.nan},
        {"until": -1.0},
        {"until": NOW + MAX_RETRY_AFTER + 1},
        {"break_seconds": 121.0},
        {"break_seconds": -1.0},
        {"break_seconds": math.nan},
        {"failures": -1},
        {"failures": MAX_FAILURES + 1},
        {"state": S.HALF_OPEN},
        {"state": S.NOT_CONFIGURED},
    ],
    ids=repr,
)
def test_records_no_rule_could_leave_are_not(change: dict[str, object]) -> None:
    """nan, inf, negative, too far ahead, too long, a state never stored: not plausible."""
    assert not machine.plausible(dataclasses.replace(OPEN, **change), NOW, POLICY)  # type: ignore[arg-type]


def test_a_retry_after_longer_than_a_day_cools_down_for_a_day() -> None:
    """A provider asking for a week (or for ever) gets a day, and the record stays plausible."""
    reported = machine.report(
        BreakerRecord(), NOW, POLICY, error_class=ErrorClass.RATE_LIMIT, retry_after=7 * 86_400
    )
    assert reported.record.state is S.RATE_LIMITED
    assert reported.record.until == NOW + MAX_RETRY_AFTER
    assert machine.plausible(reported.record, NOW, POLICY)
