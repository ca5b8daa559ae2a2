"""The Lua scripts against the pure machine they copy: the same moves, step by step.

Hypothesis draws a starting record (any state, count, break, lease and last error, written straight
into the hash) and a sequence of admits, reports (every class, Retry-After, cancellations, probes
reporting late or never) and time steps; each sequence runs on :mod:`failover.health.machine` and,
through :class:`RedisHealthStore`, on the real Redis, and every decision and record must agree.
Times step by whole seconds on both sides; Redis' own clock adds the few milliseconds the test
takes, always forward, so a boundary the machine meets exactly (``now == until``) Redis meets just
past, and answers the same. Times are compared with a margin, everything else exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from failover.errors import ErrorClass
from failover.health import machine
from failover.health.base import DeploymentState, Report
from failover.health.machine import BreakerPolicy, BreakerRecord
from failover.state import RedisHealthStore

pytestmark = pytest.mark.services

S = DeploymentState
RATE_LIMIT, QUOTA, AUTH = ErrorClass.RATE_LIMIT, ErrorClass.QUOTA, ErrorClass.AUTH
SERVER_ERROR = ErrorClass.SERVER_ERROR
_names = itertools.count()


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class Admit:
    early: bool


@dataclass(frozen=True)
class Tell:
    error_class: ErrorClass | None
    retry_after: int | None
    cancelled: bool
    which: int  # which admission reports: an index into those still out (modulo), or a fresh one


@dataclass(frozen=True)
class Attempt:
    """An admit and, at once, the report of what that attempt produced (the common case)."""

    error_class: ErrorClass | None
    retry_after: int | None
    early: bool


@dataclass(frozen=True)
class Start:
    """A starting record, its times in whole seconds from the test's start."""

    state: DeploymentState
    failures: int
    until: int
    break_seconds: int
    probe: int | None
    last_error: ErrorClass | None

    def record(self, start: float) -> BreakerRecord:
        return BreakerRecord(
            state=self.state,
            failures=self.failures,
            until=0.0 if self.state is DeploymentState.AVAILABLE else start + self.until,
            break_seconds=float(self.break_seconds),
            probe_until=None if self.probe is None else start + self.probe,
            last_error=self.last_error,
        )


CLASSES = st.one_of(st.none(), st.sampled_from(ErrorClass))
RETRY_AFTERS = st.one_of(st.none(), st.integers(0, 70), st.just(10**7))  # 10**7: over the cap
STEPS = st.one_of(
    st.builds(Advance, st.sampled_from([0, 1, 5, 8, 10, 15, 20, 40])),
    st.builds(Attempt, CLASSES, RETRY_AFTERS, st.booleans()),
    st.builds(Admit, st.booleans()),
    st.builds(
        Tell,
        CLASSES,
        RETRY_AFTERS,
        st.booleans(),
        st.integers(-1, 4),
    ),
)


STARTS = st.builds(
    Start,
    st.sampled_from(
        [DeploymentState.AVAILABLE, DeploymentState.RATE_LIMITED, DeploymentState.CIRCUIT_OPEN]
    ),
    st.integers(0, 5),
    st.integers(-20, 60),
    # 600: a break longer than the test policy's longest, and leases up to 60 s against its 8 s:
    # records another gateway's config wrote, which both sides must honour as they are.
    st.sampled_from([0, 10, 20, 40, 600]),
    st.one_of(st.none(), st.integers(-10, 60)),
    CLASSES,
)


async def write(url: str, key: str, record: BreakerRecord) -> None:
    """Put ``record`` in the hash as the scripts lay it out."""
    fields = {
        "state": record.state.value,
        "failures": str(record.failures),
        "until": repr(record.until),
        "break": repr(record.break_seconds),
    }
    if record.probe_until is not None:
        fields["probe"] = repr(record.probe_until)
    if record.last_error is not None:
        fields["error"] = record.last_error.value
    client = redis.Redis.from_url(url)
    try:
        await client.hset(key, mapping=fields)
    finally:
        await client.aclose()


def assert_same(pure: BreakerRecord, shared: BreakerRecord) -> None:
    assert (pure.state, pure.failures, pure.break_seconds, pure.last_error) == (
        shared.state,
        shared.failures,
        shared.break_seconds,
        shared.last_error,
    )
    assert shared.until == pytest.approx(pure.until, abs=0.5)
    assert (pure.probe_until is None) == (shared.probe_until is None)
    if pure.probe_until is not None:
        assert shared.probe_until == pytest.approx(pure.probe_until, abs=0.5)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The straggler rules, which random sequences seldom reach: a late failure never shortens a wait.
@example(1, Start(S.RATE_LIMITED, 0, 30, 0, None, None), [Tell(RATE_LIMIT, 5, False, -1)])
@example(
    1, Start(S.RATE_LIMITED, 0, 60, 0, None, RATE_LIMIT), [Tell(SERVER_ERROR, None, False, -1)]
)
@example(3, Start(S.CIRCUIT_OPEN, 3, 40, 10, None, SERVER_ERROR), [Tell(QUOTA, None, False, -1)])
@example(3, Start(S.AVAILABLE, 0, 0, 10, None, AUTH), [Tell(SERVER_ERROR, None, False, -1)])
@example(3, Start(S.RATE_LIMITED, 1, 30, 20, None, RATE_LIMIT), [Tell(None, None, False, -1)])
@given(
    threshold=st.integers(1, 4),
    initial=st.one_of(st.none(), STARTS),
    steps=st.lists(STEPS, min_size=1, max_size=12),
)
async def test_scripts_make_the_machines_moves(
    redis_url: str,
    redis_prefix: str,
    threshold: int,
    initial: Start | None,
    steps: list[Advance | Admit | Attempt | Tell],
) -> None:
    """Any sequence of admits, reports and waits leaves Lua and Python in the same state."""
    policy = BreakerPolicy(
        failure_threshold=threshold,
        recovery_seconds=10,
        max_recovery_seconds=40,
        rate_limit_cooldown=15,
        probe_lease_seconds=8,
    )
    store = RedisHealthStore(redis_url, key_prefix=redis_prefix, timeout=2.0)
    name = f"d{next(_names)}"
    try:
        start, _ = await store.read([name])
        shift = 0.0
        record = BreakerRecord()
        out: list[tuple[float | None, float | None]] = []  # (pure lease, shared lease)
        if initial is not None:
            record = initial.record(start)
            await write(redis_url, store.key(name), record)
            if record.probe_until is not None:  # the attempt holding the starting lease
                out.append((record.probe_until, record.probe_until))
        for step in steps:
            now = start + shift
            if isinstance(step, Advance):
                shift += step.seconds
                continue
            if isinstance(step, Admit | Attempt):
                pure = machine.admit(record, now, policy, early=step.early)
                shared = await store.admit(name, policy, early=step.early, shift=shift)
                assert (pure.admitted, pure.lease is None) == (
                    shared.admitted,
                    shared.lease is None,
                )
                record = pure.record
                assert_same(record, shared.record)
                if not pure.admitted:
                    continue
                out.append((pure.lease, shared.lease))
            if isinstance(step, Attempt | Tell):
                lease: tuple[float | None, float | None] = (None, None)
                if isinstance(step, Attempt):
                    lease = out.pop()
                    outcome = Report(step.error_class, step.retry_after)
                else:
                    if out and step.which >= 0:
                        lease = out.pop(step.which % len(out))
                    outcome = Report(step.error_class, step.retry_after, cancelled=step.cancelled)
                reported = machine.report(
                    record,
                    now,
                    policy,
                    error_class=outcome.error_class,
                    retry_after=outcome.retry_after,
                    cancelled=outcome.cancelled,
                    lease=lease[0],
                )
                answer = await store.report(name, policy, outcome, lease=lease[1], shift=shift)
                assert (reported.before, reported.after) == (answer.before, answer.after)
                record = reported.record
                assert_same(record, answer.record)
        final, (stored,) = await store.read([name], shift=shift)
        assert final == pytest.approx(start + shift, abs=0.5)
        assert_same(record, stored)
    finally:
        await store.aclose()
