"""The pure machine: the effect table, the flat record, and SPEC rule 1's plan."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health import machine
from failover.health.base import DeploymentState, Plan
from failover.health.machine import BreakerPolicy, BreakerRecord, Effect

S = DeploymentState
POLICY = BreakerPolicy()


def rate_limited(until: float, last_error: ErrorClass = ErrorClass.RATE_LIMIT) -> BreakerRecord:
    return BreakerRecord(state=S.RATE_LIMITED, until=until, last_error=last_error)


def circuit_open(
    until: float,
    last_error: ErrorClass = ErrorClass.SERVER_ERROR,
    probe_until: float | None = None,
) -> BreakerRecord:
    return BreakerRecord(
        state=S.CIRCUIT_OPEN,
        failures=5,
        until=until,
        break_seconds=60.0,
        probe_until=probe_until,
        last_error=last_error,
    )


def test_every_error_class_has_an_effect() -> None:
    """The effect table covers every class, as SPEC's health column says."""
    assert set(machine.EFFECTS) == set(ErrorClass)
    assert machine.EFFECTS[ErrorClass.RATE_LIMIT] is Effect.COOLDOWN
    assert machine.EFFECTS[ErrorClass.QUOTA] is Effect.QUOTA
    assert machine.EFFECTS[ErrorClass.AUTH] is Effect.OPEN
    assert machine.EFFECTS[ErrorClass.NOT_FOUND] is Effect.OPEN
    assert {c for c, e in machine.EFFECTS.items() if e is Effect.FAILURE} == {
        ErrorClass.CONNECTION,
        ErrorClass.TIMEOUT,
        ErrorClass.SERVER_ERROR,
        ErrorClass.MALFORMED,
    }


def test_record_is_flat_scalars() -> None:
    """The record is six scalars, so a Redis hash and a Lua script can hold and move it."""
    fields = [f.name for f in dataclasses.fields(BreakerRecord)]
    assert fields == ["state", "failures", "until", "break_seconds", "probe_until", "last_error"]
    record = circuit_open(100.0, probe_until=130.0)
    assert all(isinstance(getattr(record, name), str | int | float | type(None)) for name in fields)


def test_policy_from_config_takes_the_deployment_timeout_as_lease() -> None:
    """The probe lease lasts one attempt's timeout."""
    deployment = DeploymentConfig(provider="groq", model="llama", api_key="k", timeout=12)
    health = HealthConfig(failure_threshold=3, recovery_seconds=10, max_recovery_seconds=80)
    policy = BreakerPolicy.from_config(health, deployment)
    assert policy == BreakerPolicy(3, 10.0, 80.0, 60.0, 12.0)


def test_transitions_are_pure() -> None:
    """admit and report return new records and leave the given one as it was."""
    record = BreakerRecord()
    result = machine.report(record, 0.0, POLICY, error_class=ErrorClass.AUTH)
    assert record == BreakerRecord()
    assert result.record.state is S.CIRCUIT_OPEN
    assert (result.before, result.after) == (S.AVAILABLE, S.CIRCUIT_OPEN)
    admitted = machine.admit(result.record, 60.0, POLICY)
    assert admitted.admitted
    assert admitted.lease == 90.0
    assert result.record.probe_until is None


def test_time_alone_moves_the_visible_state() -> None:
    """An ended break reads half_open and an ended cooldown available, with no write."""
    assert machine.effective_state(circuit_open(10.0), 9.99) is S.CIRCUIT_OPEN
    assert machine.effective_state(circuit_open(10.0), 10.0) is S.HALF_OPEN
    assert machine.effective_state(rate_limited(10.0), 9.99) is S.RATE_LIMITED
    assert machine.effective_state(rate_limited(10.0), 10.0) is S.AVAILABLE


def test_plan_keeps_route_order_and_skips_the_unavailable() -> None:
    """Available and free half-open targets are planned in route order, each once."""
    records = [
        ("a", rate_limited(50.0)),
        ("b", BreakerRecord()),
        ("c", circuit_open(5.0)),
        ("d", circuit_open(5.0, probe_until=20.0)),
        ("e", BreakerRecord(state=S.NOT_CONFIGURED)),
        ("b", BreakerRecord()),
    ]
    assert machine.plan(records, 10.0) == Plan(("b", "c"))


def test_plan_with_nothing_available_probes_the_soonest_end() -> None:
    """Rule 1: when nothing admits, the target whose wait ends soonest is the early probe."""
    records = [
        ("a", circuit_open(40.0)),
        ("b", rate_limited(25.0)),
        ("c", circuit_open(30.0)),
    ]
    assert machine.plan(records, 10.0) == Plan((), probe="b", retry_after=15.0)


def test_plan_never_probes_auth_or_quota_early() -> None:
    """A sooner end held for auth or quota is skipped for the probe but counts for retry_after."""
    records = [
        ("auth", circuit_open(12.0, last_error=ErrorClass.AUTH)),
        ("quota", rate_limited(11.0, last_error=ErrorClass.QUOTA)),
        ("later", circuit_open(50.0)),
    ]
    assert machine.plan(records, 10.0) == Plan((), probe="later", retry_after=1.0)


def test_plan_with_no_probe_possible_gives_retry_after() -> None:
    """Holds and busy leases only: no probe, and the soonest end as retry_after."""
    records = [
        ("auth", circuit_open(40.0, last_error=ErrorClass.AUTH)),
        ("probing", circuit_open(30.0, probe_until=35.0)),
        ("half", circuit_open(5.0, probe_until=18.0)),
        ("off", BreakerRecord(state=S.NOT_CONFIGURED)),
    ]
    assert machine.plan(records, 10.0) == Plan((), probe=None, retry_after=8.0)


def test_plan_ties_go_to_route_order() -> None:
    """Two breaks ending together: the earlier target is the probe."""
    records = [("x", circuit_open(30.0)), ("y", rate_limited(30.0))]
    assert machine.plan(records, 0.0).probe == "x"
    assert machine.plan(list(reversed(records)), 0.0).probe == "y"


def test_plan_without_early_probe() -> None:
    """early_probe=False names no probe but still the wait."""
    records = [("x", circuit_open(30.0))]
    assert machine.plan(records, 0.0, early_probe=False) == Plan((), retry_after=30.0)


def test_plan_of_unconfigured_targets_only() -> None:
    """Nothing configured: no target, no probe, and no end to wait for."""
    records = [("x", BreakerRecord(state=S.NOT_CONFIGURED))]
    assert machine.plan(records, 0.0) == Plan(())


# Failures weighted up so that random runs reach open circuits, half-open probes and holds.
_OUTCOMES = st.sampled_from(
    [ErrorClass.SERVER_ERROR, ErrorClass.TIMEOUT, None, "cancelled", *ErrorClass]
)
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["attempt", "attempt", "admit", "early", "report", "advance"]),
        _OUTCOMES,
        st.sampled_from([0.0, 1.0, 29.0, 30.0, 60.0, 120.0, 700.0]),
        st.one_of(st.none(), st.floats(min_value=-10, max_value=100, allow_nan=False)),
    ),
    max_size=80,
)


@settings(derandomize=True, database=None, max_examples=500, deadline=None)
@given(steps=_STEPS)
def test_any_sequence_keeps_the_invariants(
    steps: list[tuple[str, ErrorClass | str | None, float, float | None]],
) -> None:
    """Random admits, reports and waits: one live probe at most, holds never probed early, the
    break within [recovery, max], and a report never takes a lease."""
    policy = BreakerPolicy(failure_threshold=3, probe_lease_seconds=30.0)
    record, now = BreakerRecord(), 0.0
    leases: list[float | None] = []
    for action, outcome, seconds, retry_after in steps:
        if action == "advance":
            now += seconds
        if action in ("attempt", "admit", "early"):
            state, before = machine.effective_state(record, now), record
            result = machine.admit(record, now, policy, early=action == "early")
            record = result.record
            if result.lease is not None:
                assert before.probe_until is None or before.probe_until <= now
                if state is not S.HALF_OPEN:
                    assert state in (S.CIRCUIT_OPEN, S.RATE_LIMITED)
                    assert before.last_error not in machine.HOLDS
            elif result.admitted:
                assert state is S.AVAILABLE
            if result.admitted:
                leases.append(result.lease)
        if action in ("attempt", "report") and leases:
            before = record
            lease = leases.pop() if action == "attempt" else leases.pop(0)
            record = machine.report(
                record,
                now,
                policy,
                error_class=outcome if isinstance(outcome, ErrorClass) else None,
                retry_after=retry_after,
                cancelled=outcome == "cancelled",
                lease=lease,
            ).record
            assert record.probe_until in (None, before.probe_until)
        assert record.break_seconds == 0 or (
            policy.recovery_seconds <= record.break_seconds <= policy.max_recovery_seconds
        )
        assert record.failures >= 0
        assert record.state is not S.HALF_OPEN  # derived, never stored
