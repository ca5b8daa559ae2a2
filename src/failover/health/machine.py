"""One deployment's health as a pure state machine: a small flat record and the moves between them.

Every function here takes the record and ``now`` and returns a new record; none reads a clock,
sleeps or does I/O (STYLE habit 4). The states are those of docs/semantics.md::

    available ──N consecutive failures, auth, not_found──▶ circuit_open ──break ends──▶ half_open
        ▲  ▲                                                   ▲                          │
        │  └─────── 429 / quota cooldown ends ─── rate_limited │  one probe (a lease)      │
        │                                                      └── probe fails: break ×2 ──┤
        └──────────────────────────── probe succeeds ──────────────────────────────────────┘

``half_open`` is never stored: it is ``circuit_open`` whose break has ended, and a cooldown whose
end has passed is ``available``. So time alone never needs a write, and reading a record at any
``now`` gives its state.

The record is deliberately flat (``state, failures, until, break_seconds, probe_until,
last_error``: six scalars) so that a Redis backend can keep it as one hash and run each
:func:`admit` / :func:`report` as one Lua script (read the hash, apply the same rules, write it
back, return the decision), which makes every transition atomic across gateways sharing state.
That backend passes a ``now`` every gateway agrees on (Redis ``TIME`` or the wall clock), since
monotonic clocks are not shared between hosts. Keep these functions free of anything a short Lua
script could not do.

Effects of each failure class, as the failure table:

- ``connection``, ``timeout``, ``server_error``, ``malformed``: a failure; ``failure_threshold``
  consecutive ones open the circuit for ``recovery_seconds``.
- ``rate_limit``: a cooldown for Retry-After, else ``rate_limit_cooldown``; not a failure.
- ``quota``: a cooldown of ``recovery_seconds`` that is never probed early.
- ``auth``, ``not_found``: the circuit opens at once (an ``auth`` break is never probed early).
- ``context_overflow``, ``bad_request``: nothing (the request was at fault, not the deployment).
- success: the count and the break reset and an open circuit closes. A cooldown the provider asked
  for is kept, unless the success is the probe's.
- cancelled: nothing, except that the probe lease it held is released.

No wait the machine gives is longer than :data:`MAX_WAIT` (a day): a provider's Retry-After is
honoured up to it (a longer one is a broken header), and a policy's breaks, cooldowns and probe
lease are cut to it (the config schema sets no maximum). Records read from a store shared with
others (Redis) are checked with :func:`plausible` first: one that no policy could have left is
treated as absent, so garbage can never hold a deployment. The check depends on no policy: the
gateways sharing a store may run different configs (a rolling deploy, two teams on one Redis), and
each must honour the records the others write.

While a deployment waits, failures reported by attempts that did not hold its probe lease
(stragglers started before it went down) never shorten the wait nor turn an ``auth``/``quota``
hold into one that may be probed early. A failed probe of an open circuit (half-open, or early
under rule 1) reopens it with twice the last break, up to ``max_recovery_seconds``; the break
returns to ``recovery_seconds`` only after a success.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, NamedTuple

from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import DeploymentState, Plan

__all__ = [
    "CLOCK_STEP",
    "EFFECTS",
    "HOLDS",
    "MAX_AHEAD",
    "MAX_FAILURES",
    "MAX_RETRY_AFTER",
    "MAX_WAIT",
    "STORED_STATES",
    "Admitted",
    "BreakerPolicy",
    "BreakerRecord",
    "Effect",
    "Reported",
    "admit",
    "admits",
    "effective_state",
    "may_probe_early",
    "plan",
    "plausible",
    "report",
    "wait_seconds",
]


class Effect(enum.Enum):
    """What a failure class does to its deployment's health."""

    FAILURE = "failure"  # counts toward the threshold
    COOLDOWN = "cooldown"  # rate limited for Retry-After, else rate_limit_cooldown
    QUOTA = "quota"  # rate limited for recovery_seconds, never probed early
    OPEN = "open"  # the circuit opens at once
    NONE = "none"  # the request's fault: nothing changes


EFFECTS: Mapping[ErrorClass, Effect] = MappingProxyType(
    {
        ErrorClass.CONNECTION: Effect.FAILURE,
        ErrorClass.TIMEOUT: Effect.FAILURE,
        ErrorClass.SERVER_ERROR: Effect.FAILURE,
        ErrorClass.MALFORMED: Effect.FAILURE,
        ErrorClass.RATE_LIMIT: Effect.COOLDOWN,
        ErrorClass.QUOTA: Effect.QUOTA,
        ErrorClass.AUTH: Effect.OPEN,
        ErrorClass.NOT_FOUND: Effect.OPEN,
        ErrorClass.CONTEXT_OVERFLOW: Effect.NONE,
        ErrorClass.BAD_REQUEST: Effect.NONE,
    }
)
"""The effect of each failure class (the failure table, column "health")."""

HOLDS = frozenset({ErrorClass.AUTH, ErrorClass.QUOTA})
"""Classes whose wait is never cut short by an early probe (rule 1): retrying early cannot
fix a bad key or an empty account, and would only burn a request."""

MAX_WAIT: Final = 86_400.0
"""The longest break, cooldown or probe lease the machine gives, in seconds (a day), whatever the
policy: so that every record any gateway writes is one every other gateway finds plausible."""

MAX_RETRY_AFTER: Final = MAX_WAIT
"""The longest Retry-After a cooldown honours, in seconds."""

CLOCK_STEP: Final = 3_600.0
"""How far the shared clock may step back between a write and a read (Redis failing over to a
replica whose clock is behind, an NTP step) before a record written then looks like no policy's."""

MAX_AHEAD: Final = MAX_WAIT + CLOCK_STEP
"""How far ahead of ``now`` a plausible record's end of wait or probe lease may lie, in seconds."""

MAX_FAILURES: Final = 1_000_000_000
"""The largest consecutive-failure count a record holds (the count stops there); a bigger one is
not ours."""

STORED_STATES: Final = frozenset(
    {DeploymentState.AVAILABLE, DeploymentState.RATE_LIMITED, DeploymentState.CIRCUIT_OPEN}
)
"""The states a record is kept in (``half_open`` is derived; ``not_configured`` never stored)."""


_SECONDS = (
    "recovery_seconds",
    "max_recovery_seconds",
    "rate_limit_cooldown",
    "probe_lease_seconds",
)
"""The policy fields that are lengths of time (each cut to :data:`MAX_WAIT`)."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """The numbers one deployment's machine runs on: ``HealthConfig`` plus its probe lease.

    Each length of time is cut to :data:`MAX_WAIT`, once, here: what the machine writes must stay
    :func:`plausible` to every gateway, whatever this one's config says.

    >>> BreakerPolicy(failure_threshold=3).recovery_seconds
    60.0
    >>> BreakerPolicy(recovery_seconds=7 * 86_400).recovery_seconds
    86400.0
    """

    failure_threshold: int = 5
    recovery_seconds: float = 60.0
    max_recovery_seconds: float = 600.0
    rate_limit_cooldown: float = 60.0
    probe_lease_seconds: float = 30.0

    def __post_init__(self) -> None:
        for name in _SECONDS:
            object.__setattr__(self, name, min(float(getattr(self, name)), MAX_WAIT))

    @classmethod
    def from_config(cls, health: HealthConfig, deployment: DeploymentConfig) -> BreakerPolicy:
        """The policy of ``deployment``: its probe lease lasts one attempt's ``timeout``."""
        return cls(
            failure_threshold=health.failure_threshold,
            recovery_seconds=health.recovery_seconds,
            max_recovery_seconds=health.max_recovery_seconds,
            rate_limit_cooldown=health.rate_limit_cooldown,
            probe_lease_seconds=deployment.timeout,
        )


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """The whole stored state of one deployment's health.

    ``state`` is one of ``available``, ``rate_limited``, ``circuit_open``, ``not_configured``
    (``half_open`` is derived, see :func:`effective_state`). ``until`` is when a cooldown or break
    ends (meaningful only in those states), ``break_seconds`` the length of the last break (0 when
    the circuit has been healthy since), ``probe_until`` when the probe lease expires (``None``
    when no probe holds it) and ``last_error`` the class of the failure that last counted.
    """

    state: DeploymentState = DeploymentState.AVAILABLE
    failures: int = 0
    until: float = 0.0
    break_seconds: float = 0.0
    probe_until: float | None = None
    last_error: ErrorClass | None = None


class Admitted(NamedTuple):
    """The result of :func:`admit`: the new record, and the lease when the attempt is a probe."""

    record: BreakerRecord
    admitted: bool
    lease: float | None = None


class Reported(NamedTuple):
    """The result of :func:`report`: the new record and the visible state before and after."""

    record: BreakerRecord
    before: DeploymentState
    after: DeploymentState


def plausible(record: BreakerRecord, now: float) -> bool:
    """Could these rules, under any policy, have left ``record`` for a reader at ``now``?

    Its state is one that is stored, its count a whole number from 0 to :data:`MAX_FAILURES`, its
    break at most :data:`MAX_WAIT`, and its end of wait and probe lease no further ahead than
    :data:`MAX_AHEAD`; none of them negative, nan or infinite (which fail every comparison here).
    No policy is consulted: a record is not garbage for being longer than this gateway's own
    settings would make it, since another gateway sharing the store may run other settings. A
    store read by others than us (Redis) treats a record that is not plausible as absent: garbage
    must not be able to keep a deployment waiting for good (``probe=nan`` once kept one half-open
    for ever), and the most it can hold one is :data:`MAX_AHEAD`.

    >>> plausible(BreakerRecord(DeploymentState.CIRCUIT_OPEN, 5, 160.0, 60.0), 100.0)
    True
    >>> plausible(BreakerRecord(probe_until=float("nan")), 100.0)
    False
    """
    return (
        record.state in STORED_STATES
        and 0 <= record.failures <= MAX_FAILURES
        and 0.0 <= record.until <= now + MAX_AHEAD
        and 0.0 <= record.break_seconds <= MAX_WAIT
        and (record.probe_until is None or 0.0 <= record.probe_until <= now + MAX_AHEAD)
    )


def effective_state(record: BreakerRecord, now: float) -> DeploymentState:
    """The state ``record`` is in at ``now``: an ended break reads ``half_open``, an ended
    cooldown ``available``."""
    if record.state is DeploymentState.CIRCUIT_OPEN and now >= record.until:
        return DeploymentState.HALF_OPEN
    if record.state is DeploymentState.RATE_LIMITED and now >= record.until:
        return DeploymentState.AVAILABLE
    return record.state


def _lease_free(record: BreakerRecord, now: float) -> bool:
    return record.probe_until is None or now >= record.probe_until


def admits(record: BreakerRecord, now: float) -> bool:
    """Would an attempt be admitted now without asking for an early probe."""
    state = effective_state(record, now)
    return state is DeploymentState.AVAILABLE or (
        state is DeploymentState.HALF_OPEN and _lease_free(record, now)
    )


def may_probe_early(record: BreakerRecord, now: float) -> bool:
    """May this deployment, still open or cooling down, be tried now as an early probe."""
    return (
        effective_state(record, now) in (DeploymentState.CIRCUIT_OPEN, DeploymentState.RATE_LIMITED)
        and record.last_error not in HOLDS
        and _lease_free(record, now)
    )


def wait_seconds(record: BreakerRecord, now: float) -> float | None:
    """Seconds until the deployment admits an attempt again (0 if it does now; None if never)."""
    state = effective_state(record, now)
    if state is DeploymentState.NOT_CONFIGURED:
        return None
    if state in (DeploymentState.CIRCUIT_OPEN, DeploymentState.RATE_LIMITED):
        return record.until - now
    if state is DeploymentState.HALF_OPEN and record.probe_until is not None:
        return max(0.0, record.probe_until - now)
    return 0.0


def _settle(record: BreakerRecord, now: float) -> BreakerRecord:
    """Write down what time alone did: an ended cooldown is available again."""
    if record.state is DeploymentState.RATE_LIMITED and now >= record.until:
        return replace(record, state=DeploymentState.AVAILABLE, until=0.0, probe_until=None)
    return record


def admit(
    record: BreakerRecord, now: float, policy: BreakerPolicy, *, early: bool = False
) -> Admitted:
    """Leave for one attempt at ``now``.

    An available deployment admits freely. A half-open one admits one probe at a time: the attempt
    takes the lease, which expires after ``policy.probe_lease_seconds`` so that a probe that never
    reports cannot keep the circuit half-open. With ``early`` (rule 1, nothing else
    available) a deployment still open or cooling down also admits a probe, unless it waits for
    ``auth`` or ``quota``.
    """
    record = _settle(record, now)
    state = effective_state(record, now)
    if state is DeploymentState.AVAILABLE:
        return Admitted(record, True)
    if (state is DeploymentState.HALF_OPEN and _lease_free(record, now)) or (
        early and may_probe_early(record, now)
    ):
        lease = now + policy.probe_lease_seconds
        return Admitted(replace(record, probe_until=lease), True, lease)
    return Admitted(record, False)


def report(
    record: BreakerRecord,
    now: float,
    policy: BreakerPolicy,
    *,
    error_class: ErrorClass | None = None,
    retry_after: float | None = None,
    cancelled: bool = False,
    lease: float | None = None,
) -> Reported:
    """Feed one attempt's outcome: success (``error_class`` None), a failure, or ``cancelled``.

    ``lease`` is the one :func:`admit` gave the attempt; the report decides the probe only while
    that lease is still the record's (a late report after its lease expired and another probe took
    the slot counts as an ordinary attempt). ``retry_after`` is the provider's Retry-After in
    seconds from ``now`` (an HTTP date already turned into seconds; a past one counts as 0).
    """
    before = effective_state(record, now)
    if record.state is DeploymentState.NOT_CONFIGURED:
        return Reported(record, before, before)
    record = _settle(record, now)
    probe = lease is not None and record.probe_until == lease
    if probe:
        record = replace(record, probe_until=None)
    if cancelled:
        pass
    elif error_class is None:
        record = _succeed(record, probe)
    else:
        record = _fail(record, now, policy, error_class, retry_after, probe)
    return Reported(record, before, effective_state(record, now))


def _succeed(record: BreakerRecord, probe: bool) -> BreakerRecord:
    if record.state is DeploymentState.RATE_LIMITED and not probe:
        # A straggler that started before the 429 proves nothing about the provider's limit.
        return replace(record, failures=0, break_seconds=0.0)
    if _clean(record):
        return record  # the usual case: a healthy deployment stays as it was
    return BreakerRecord(last_error=record.last_error)


def _clean(record: BreakerRecord) -> bool:
    """Is ``record`` what a success leaves (available, no failure, no break, no probe)."""
    return (
        record.state is DeploymentState.AVAILABLE
        and record.failures == 0
        and record.break_seconds == 0.0
        and record.probe_until is None
        and record.until == 0.0
    )


def _fail(
    record: BreakerRecord,
    now: float,
    policy: BreakerPolicy,
    error_class: ErrorClass,
    retry_after: float | None,
    probe: bool,
) -> BreakerRecord:
    effect = EFFECTS[error_class]
    if effect is Effect.NONE:
        return record
    if effect is Effect.COOLDOWN:
        seconds = (
            policy.rate_limit_cooldown
            if retry_after is None
            else min(max(0.0, retry_after), MAX_RETRY_AFTER)
        )
        return _cool(record, now, error_class, seconds, probe)
    if effect is Effect.QUOTA:
        return _cool(record, now, error_class, policy.recovery_seconds, probe)
    record = replace(
        record,
        failures=min(record.failures + 1, MAX_FAILURES),
        last_error=error_class if probe else _note(record, error_class),
    )
    if record.state is DeploymentState.CIRCUIT_OPEN:
        # Only the probe decides an open circuit; stragglers' failures change no break.
        return _open(record, now, policy, grow=True) if probe else record
    if effect is Effect.OPEN or record.failures >= policy.failure_threshold:
        return _open(record, now, policy, grow=False)
    return record


def _note(record: BreakerRecord, error_class: ErrorClass) -> ErrorClass:
    """The ``last_error`` after a non-probe failure: a hold (auth, quota) is not overwritten by a
    lesser class while the deployment still waits, so it can never be probed early by accident."""
    if (
        record.state is not DeploymentState.AVAILABLE
        and record.last_error in HOLDS
        and error_class not in HOLDS
    ):
        return record.last_error
    return error_class


def _open(record: BreakerRecord, now: float, policy: BreakerPolicy, *, grow: bool) -> BreakerRecord:
    if record.break_seconds <= 0:
        seconds = policy.recovery_seconds
    elif grow:
        seconds = min(record.break_seconds * 2, policy.max_recovery_seconds)
    else:
        seconds = record.break_seconds
    until = now + seconds
    if record.state is DeploymentState.RATE_LIMITED:
        until = max(until, record.until)  # the provider's Retry-After still stands
    return replace(record, state=DeploymentState.CIRCUIT_OPEN, until=until, break_seconds=seconds)


def _cool(
    record: BreakerRecord, now: float, error_class: ErrorClass, seconds: float, probe: bool
) -> BreakerRecord:
    if record.state is DeploymentState.CIRCUIT_OPEN and not probe:
        if error_class in HOLDS:
            return replace(record, until=max(record.until, now + seconds), last_error=error_class)
        return record  # the open circuit already keeps traffic off
    until = now + seconds
    if record.state is DeploymentState.RATE_LIMITED and not probe:
        until = max(until, record.until)
    return replace(
        record,
        state=DeploymentState.RATE_LIMITED,
        until=until,
        last_error=error_class if probe else _note(record, error_class),
    )


def plan(
    records: Sequence[tuple[str, BreakerRecord]], now: float, *, early_probe: bool = True
) -> Plan:
    """The targets that admit an attempt now, in order; else rule 1's probe and wait.

    When none admits, ``probe`` is the deployment whose break or cooldown ends soonest among those
    that may be probed early (first in route order on a tie), and ``retry_after`` the seconds until
    the soonest deployment admits again (``None`` when none ever will: all not configured).
    """
    unique = list(dict(records).items())  # a target named twice is planned once
    available = tuple(name for name, record in unique if admits(record, now))
    if available:
        return Plan(available)
    waits = [w for _, record in unique if (w := wait_seconds(record, now)) is not None]
    probe = None
    if early_probe:
        candidates = [
            (record.until, name) for name, record in unique if may_probe_early(record, now)
        ]
        if candidates:
            probe = min(candidates, key=lambda candidate: candidate[0])[1]
    return Plan((), probe=probe, retry_after=min(waits) if waits else None)
