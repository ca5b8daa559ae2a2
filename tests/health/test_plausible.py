"""What a stored record may hold (machine.plausible), and the longest wait the machine gives.

A record is garbage only when no valid config could have written it: the check consults no
policy, since the gateways sharing a store may run different configs (a rolling deploy).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health import machine
from failover.health.base import DeploymentState
from failover.health.machine import (
    MAX_AHEAD,
    MAX_FAILURES,
    MAX_RETRY_AFTER,
    MAX_WAIT,
    BreakerPolicy,
    BreakerRecord,
)

S = DeploymentState
POLICY = BreakerPolicy(recovery_seconds=30, max_recovery_seconds=120, probe_lease_seconds=10)
NOW = 1_700_000_000.0
OPEN = BreakerRecord(S.CIRCUIT_OPEN, failures=5, until=NOW + 30, break_seconds=30.0)


def test_records_the_machine_leaves_are_plausible() -> None:
    """Fresh, open, cooling down, probing: every record the rules write passes."""
    assert machine.plausible(BreakerRecord(), NOW)
    assert machine.plausible(OPEN, NOW)
    assert machine.plausible(dataclasses.replace(OPEN, probe_until=NOW + 10), NOW)
    cooling = BreakerRecord(
        S.RATE_LIMITED, until=NOW + MAX_RETRY_AFTER, last_error=ErrorClass.QUOTA
    )
    assert machine.plausible(cooling, NOW)
    assert machine.plausible(dataclasses.replace(OPEN, until=NOW - 1e6), NOW)  # long past
    assert machine.plausible(dataclasses.replace(OPEN, failures=MAX_FAILURES), NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"probe_until": NOW + 60},  # a lease longer than POLICY's: another gateway's timeout
        {"probe_until": NOW + MAX_WAIT},
        {"break_seconds": 600.0},  # longer than POLICY's longest break
        {"break_seconds": MAX_WAIT, "until": NOW + MAX_WAIT},
        {"until": NOW + MAX_AHEAD},  # written a day ahead by a clock up to an hour ahead of ours
    ],
    ids=repr,
)
def test_records_other_configs_leave_are_plausible(change: dict[str, object]) -> None:
    """A lease or a break longer than this gateway's settings would give is still a record some
    valid config writes: it passes."""
    assert machine.plausible(dataclasses.replace(OPEN, **change), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"probe_until": math.nan},
        {"probe_until": math.inf},
        {"probe_until": NOW + MAX_AHEAD + 1},
        {"probe_until": -1.0},
        {"until": 1e300},
        {"until": math.nan},
        {"until": -1.0},
        {"until": NOW + MAX_AHEAD + 1},
        {"break_seconds": MAX_WAIT + 1},
        {"break_seconds": -1.0},
        {"break_seconds": math.nan},
        {"break_seconds": math.inf},
        {"failures": -1},
        {"failures": MAX_FAILURES + 1},
        {"state": S.HALF_OPEN},
        {"state": S.NOT_CONFIGURED},
    ],
    ids=repr,
)
def test_records_no_rule_could_leave_are_not(change: dict[str, object]) -> None:
    """nan, inf, negative, beyond the caps no config exceeds, a state never stored: not
    plausible."""
    assert not machine.plausible(dataclasses.replace(OPEN, **change), NOW)  # type: ignore[arg-type]


def test_a_retry_after_longer_than_a_day_cools_down_for_a_day() -> None:
    """A provider asking for a week (or for ever) gets a day, and the record stays plausible."""
    reported = machine.report(
        BreakerRecord(), NOW, POLICY, error_class=ErrorClass.RATE_LIMIT, retry_after=7 * 86_400
    )
    assert reported.record.state is S.RATE_LIMITED
    assert reported.record.until == NOW + MAX_RETRY_AFTER
    assert machine.plausible(reported.record, NOW)


def test_a_config_asking_for_more_than_a_day_gets_a_day() -> None:
    """The schema sets no maximum: a week's break, cooldown or timeout becomes a day in the
    policy, so the circuit it opens still reads as a record to every gateway."""
    week = 7 * 86_400.0
    health = HealthConfig(
        recovery_seconds=week, max_recovery_seconds=week, rate_limit_cooldown=week
    )
    deployment = DeploymentConfig(provider="groq", model="llama", api_key="k", timeout=week)
    policy = BreakerPolicy.from_config(health, deployment)
    assert policy == BreakerPolicy(5, MAX_WAIT, MAX_WAIT, MAX_WAIT, MAX_WAIT)
    opened = machine.report(BreakerRecord(), NOW, policy, error_class=ErrorClass.AUTH).record
    assert opened.until == NOW + MAX_WAIT
    assert machine.plausible(opened, NOW)
    lease = machine.admit(opened, NOW + MAX_WAIT, policy).lease
    assert lease == NOW + 2 * MAX_WAIT


def test_the_failure_count_stops_at_its_cap() -> None:
    """One more failure past MAX_FAILURES leaves the count at the cap, a record still plausible."""
    policy = BreakerPolicy(failure_threshold=3)
    record = dataclasses.replace(OPEN, failures=MAX_FAILURES)
    failed = machine.report(record, NOW, policy, error_class=ErrorClass.SERVER_ERROR).record
    assert failed.failures == MAX_FAILURES
    assert machine.plausible(failed, NOW)


SECONDS = st.floats(1e-3, 1e8)
RETRY_AFTERS = st.one_of(st.none(), st.floats(-10, 1e9))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 2e5)),
        st.tuples(st.just("admit"), st.booleans()),
        st.tuples(
            st.just("report"),
            st.one_of(st.none(), st.sampled_from(ErrorClass)),
            RETRY_AFTERS,
            st.booleans(),  # cancelled
        ),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.integers(1, 5),
    recovery=SECONDS,
    growth=st.floats(1, 1e4),
    cooldown=SECONDS,
    timeout=SECONDS,
    steps=STEPS,
)
def test_every_record_any_valid_config_writes_is_plausible(
    threshold: int,
    recovery: float,
    growth: float,
    cooldown: float,
    timeout: float,
    steps: list[tuple[object, ...]],
) -> None:
    """Any config the schema accepts, any moves: every record left is plausible, and its waits
    end within a day of the move (the clock-step allowance is never used by the machine)."""
    health = HealthConfig(
        failure_threshold=threshold,
        recovery_seconds=recovery,
        max_recovery_seconds=recovery * growth,
        rate_limit_cooldown=cooldown,
    )
    deployment = DeploymentConfig(provider="groq", model="llama", api_key="k", timeout=timeout)
    policy = BreakerPolicy.from_config(health, deployment)
    now, record, leases = NOW, BreakerRecord(), [None]
    for step in steps:
        if step[0] == "advance":
            now += float(step[1])  # type: ignore[arg-type]
            continue
        if step[0] == "admit":
            admitted = machine.admit(record, now, policy, early=bool(step[1]))
            record = admitted.record
            leases.append(admitted.lease)
        else:
            _, error_class, retry_after, cancelled = step
            record = machine.report(
                record,
                now,
                policy,
                error_class=error_class,  # type: ignore[arg-type]
                retry_after=retry_after,  # type: ignore[arg-type]
                cancelled=bool(cancelled),
                lease=leases.pop() if leases else None,
            ).record
        assert machine.plausible(record, now), record
        assert record.until <= now + MAX_WAIT
        assert record.probe_until is None or record.probe_until <= now + MAX_WAIT
