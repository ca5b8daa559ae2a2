"""CircuitBreaker: every transition of one deployment's health, on a manual clock."""

from __future__ import annotations

import pytest

from failover.clock import ManualClock
from failover.errors import ErrorClass
from failover.health.base import Admission, DeploymentState, Report
from failover.health.breaker import CircuitBreaker, Transition
from failover.health.machine import BreakerPolicy

NAME = "groq-llama"
S = DeploymentState


def make(
    *,
    threshold: int = 5,
    recovery: float = 60.0,
    max_recovery: float = 600.0,
    cooldown: float = 60.0,
    timeout: float = 30.0,
    configured: bool = True,
) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock(1000.0)
    policy = BreakerPolicy(
        failure_threshold=threshold,
        recovery_seconds=recovery,
        max_recovery_seconds=max_recovery,
        rate_limit_cooldown=cooldown,
        probe_lease_seconds=timeout,
    )
    return CircuitBreaker(NAME, policy, clock.now, configured=configured), clock


def state_of(breaker: CircuitBreaker) -> DeploymentState:
    """The breaker's state now (a call, so that mypy does not narrow it across time)."""
    return breaker.state


def attempt(
    breaker: CircuitBreaker,
    error_class: ErrorClass | None = None,
    *,
    retry_after: float | None = None,
    latency: float = 0.1,
) -> Transition | None:
    """One admitted attempt with this outcome (fails the test if it is not admitted)."""
    admission = breaker.admit()
    assert admission is not None, repr(breaker)
    return breaker.report(admission, Report(error_class, retry_after, latency))


def straggler(breaker: CircuitBreaker, error_class: ErrorClass | None) -> Transition | None:
    """An attempt admitted before the deployment went down reports now."""
    return breaker.report(Admission(NAME), Report(error_class))


def open_circuit(
    breaker: CircuitBreaker, error_class: ErrorClass = ErrorClass.SERVER_ERROR
) -> None:
    while state_of(breaker) is S.AVAILABLE:
        attempt(breaker, error_class)
    assert state_of(breaker) is S.CIRCUIT_OPEN


def test_new_breaker_is_available() -> None:
    """A fresh breaker admits freely and says so in its repr."""
    breaker, _ = make()
    assert state_of(breaker) is S.AVAILABLE
    assert breaker.admit() == Admission(NAME)
    assert repr(breaker) == "<CircuitBreaker 'groq-llama' AVAILABLE failures=0>"


@pytest.mark.parametrize(
    "error_class",
    [ErrorClass.CONNECTION, ErrorClass.TIMEOUT, ErrorClass.SERVER_ERROR, ErrorClass.MALFORMED],
)
def test_threshold_consecutive_failures_open_the_circuit(error_class: ErrorClass) -> None:
    """Each counting class adds one failure; the fifth opens the circuit for recovery_seconds."""
    breaker, clock = make()
    for count in range(1, 5):
        assert attempt(breaker, error_class) is None
        assert breaker.record.failures == count
        assert state_of(breaker) is S.AVAILABLE
    transition = attempt(breaker, error_class)
    assert transition == Transition(NAME, S.AVAILABLE, S.CIRCUIT_OPEN, error_class, 60.0)
    assert transition.alert == "circuit_open"
    assert breaker.admit() is None
    clock.advance(48)
    assert repr(breaker) == "<CircuitBreaker 'groq-llama' OPEN failures=5 reopens_in=12.0s>"


def test_success_resets_the_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker, _ = make(threshold=3)
    attempt(breaker, ErrorClass.TIMEOUT)
    attempt(breaker, ErrorClass.TIMEOUT)
    attempt(breaker)
    assert breaker.record.failures == 0
    attempt(breaker, ErrorClass.TIMEOUT)
    attempt(breaker, ErrorClass.TIMEOUT)
    assert state_of(breaker) is S.AVAILABLE
    attempt(breaker, ErrorClass.TIMEOUT)
    assert state_of(breaker) is S.CIRCUIT_OPEN


def test_break_ends_in_half_open_with_a_single_probe() -> None:
    """After recovery_seconds exactly one attempt is admitted, as the probe holding the lease."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(59.9)
    assert state_of(breaker) is S.CIRCUIT_OPEN
    clock.advance(0.1)
    assert state_of(breaker) is S.HALF_OPEN
    assert repr(breaker) == "<CircuitBreaker 'groq-llama' HALF_OPEN failures=5 probe=free>"
    probe = breaker.admit()
    assert probe == Admission(NAME, probe=True, lease=1090.0)
    assert breaker.admit() is None
    assert breaker.admit(probe=True) is None
    clock.advance(10)
    assert repr(breaker) == "<CircuitBreaker 'groq-llama' HALF_OPEN failures=5 probe=20.0s>"


def test_probe_success_closes_the_circuit() -> None:
    """A successful probe makes the deployment available with a clean count."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(60)
    probe = breaker.admit()
    assert probe is not None
    transition = breaker.report(probe, Report(latency=0.3))
    assert transition == Transition(NAME, S.HALF_OPEN, S.AVAILABLE, None)
    assert transition.alert is None
    assert breaker.record.failures == 0
    assert breaker.record.break_seconds == 0
    assert breaker.admit() == Admission(NAME)
    assert breaker.admit() == Admission(NAME)


def test_failed_probes_double_the_break_up_to_the_max() -> None:
    """Each failed probe reopens for twice the last break: 60, 120, 240, 480, then 600 capped."""
    breaker, clock = make()
    open_circuit(breaker)
    breaks = [breaker.record.break_seconds]
    for _ in range(5):
        clock.advance(breaker.record.until - clock.now())
        transition = attempt(breaker, ErrorClass.CONNECTION)
        assert transition is not None
        assert (transition.before, transition.after) == (S.HALF_OPEN, S.CIRCUIT_OPEN)
        assert transition.seconds == breaker.record.break_seconds
        breaks.append(breaker.record.break_seconds)
    assert breaks == [60, 120, 240, 480, 600, 600]
    assert repr(breaker) == "<CircuitBreaker 'groq-llama' OPEN failures=10 reopens_in=600.0s>"


def test_success_after_long_breaks_resets_the_break() -> None:
    """Once a probe succeeds, the next opening breaks for recovery_seconds again."""
    breaker, clock = make(threshold=1)
    open_circuit(breaker)
    clock.advance(60)
    attempt(breaker, ErrorClass.SERVER_ERROR)
    assert breaker.record.break_seconds == 120
    clock.advance(120)
    attempt(breaker)
    attempt(breaker, ErrorClass.SERVER_ERROR)
    assert breaker.record.until - clock.now() == 60


def test_cancelled_probe_frees_the_slot_at_once() -> None:
    """A probe failover cancelled changes no health but releases the lease for the next probe."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(60)
    probe = breaker.admit()
    assert probe is not None
    assert breaker.admit() is None
    clock.advance(2)
    assert breaker.report(probe, Report(cancelled=True, latency=2.0)) is None
    assert state_of(breaker) is S.HALF_OPEN
    assert breaker.record.failures == 5
    assert breaker.admit() == Admission(NAME, probe=True, lease=1092.0)


def test_probe_that_never_reports_frees_the_slot_when_its_lease_expires() -> None:
    """The lease lasts the deployment's timeout; after it another probe may go."""
    breaker, clock = make(timeout=30)
    open_circuit(breaker)
    clock.advance(60)
    assert breaker.admit() is not None
    clock.advance(29)
    assert breaker.admit() is None
    clock.advance(1)
    second = breaker.admit()
    assert second == Admission(NAME, probe=True, lease=1120.0)


def test_late_report_of_an_expired_lease_does_not_decide_the_new_probe() -> None:
    """The old probe's late failure counts, but the newer probe still owns the half-open slot."""
    breaker, clock = make(timeout=30)
    open_circuit(breaker)
    clock.advance(60)
    first = breaker.admit()
    clock.advance(30)
    second = breaker.admit()
    assert first is not None
    assert second is not None
    assert breaker.report(first, Report(ErrorClass.TIMEOUT, latency=30.0)) is None
    assert state_of(breaker) is S.HALF_OPEN
    assert breaker.admit() is None
    assert breaker.report(second, Report(latency=1.0)) is not None
    assert state_of(breaker) is S.AVAILABLE


def test_probe_timeout_at_the_lease_end_still_decides() -> None:
    """A probe reporting its own timeout as its lease expires reopens the circuit."""
    breaker, clock = make(timeout=30)
    open_circuit(breaker)
    clock.advance(60)
    probe = breaker.admit()
    assert probe is not None
    clock.advance(30)
    breaker.report(probe, Report(ErrorClass.TIMEOUT, latency=30.0))
    assert state_of(breaker) is S.CIRCUIT_OPEN
    assert breaker.record.break_seconds == 120


def test_rate_limit_cools_down_for_retry_after_seconds() -> None:
    """A 429 with Retry-After: 17 keeps the deployment out for 17 s and is not a failure."""
    breaker, clock = make()
    attempt(breaker, ErrorClass.SERVER_ERROR)
    transition = attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=17)
    assert transition == Transition(NAME, S.AVAILABLE, S.RATE_LIMITED, ErrorClass.RATE_LIMIT, 17.0)
    assert transition.alert == "rate_limited"
    assert breaker.record.failures == 1
    assert breaker.admit() is None
    assert (
        repr(breaker)
        == "<CircuitBreaker 'groq-llama' RATE_LIMITED failures=1 cooldown_ends_in=17.0s>"
    )
    clock.advance(17)
    assert state_of(breaker) is S.AVAILABLE
    assert breaker.admit() == Admission(NAME)


def test_rate_limit_retry_after_from_an_http_date() -> None:
    """An absolute Retry-After the adapter turned into seconds cools down that long; a past one
    not at all."""
    breaker, clock = make()
    attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=42.5)
    assert breaker.status().until == 42.5
    clock.advance(42.5)
    assert attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=-3.0) is None
    assert state_of(breaker) is S.AVAILABLE


def test_rate_limit_without_retry_after_uses_the_default_cooldown() -> None:
    """Without Retry-After the cooldown is rate_limit_cooldown."""
    breaker, clock = make(cooldown=45)
    attempt(breaker, ErrorClass.RATE_LIMIT)
    clock.advance(44.9)
    assert state_of(breaker) is S.RATE_LIMITED
    clock.advance(0.1)
    assert state_of(breaker) is S.AVAILABLE


def test_rate_limit_stragglers_only_lengthen_the_cooldown() -> None:
    """A later 429 with a shorter Retry-After does not end the cooldown sooner."""
    breaker, clock = make()
    attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=30)
    clock.advance(5)
    straggler(breaker, ErrorClass.RATE_LIMIT)  # no Retry-After: default 60 from now
    assert breaker.status().until == 60
    straggler(breaker, ErrorClass.RATE_LIMIT)
    clock.advance(1)
    breaker.report(Admission(NAME), Report(ErrorClass.RATE_LIMIT, retry_after=1))
    assert breaker.status().until == 59


def test_straggler_success_keeps_the_providers_cooldown() -> None:
    """A success of an attempt started before the 429 resets the count but not the cooldown."""
    breaker, _ = make()
    attempt(breaker, ErrorClass.TIMEOUT)
    attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=10)
    assert straggler(breaker, None) is None
    assert state_of(breaker) is S.RATE_LIMITED
    assert breaker.record.failures == 0


def test_quota_cools_down_recovery_seconds_and_is_never_probed_early() -> None:
    """Quota: out for recovery_seconds (CRITICAL), no early probe, then available again."""
    breaker, clock = make(recovery=60)
    transition = attempt(breaker, ErrorClass.QUOTA, retry_after=5)
    assert transition is not None
    assert transition.after is S.RATE_LIMITED
    assert transition.seconds == 60
    assert transition.alert == "quota_exhausted"
    assert breaker.record.failures == 0
    assert breaker.admit(probe=True) is None
    assert repr(breaker).endswith("cooldown_ends_in=60.0s hold=quota>")
    straggler(breaker, ErrorClass.SERVER_ERROR)
    straggler(breaker, ErrorClass.RATE_LIMIT)
    assert breaker.record.last_error is ErrorClass.QUOTA
    assert breaker.admit(probe=True) is None
    clock.advance(60)
    assert breaker.admit() == Admission(NAME)


def test_auth_opens_the_circuit_at_once_and_is_never_probed_early() -> None:
    """One 401 opens the circuit (auth_failed); stragglers cannot make it probe-able early."""
    breaker, clock = make()
    transition = attempt(breaker, ErrorClass.AUTH)
    assert transition == Transition(NAME, S.AVAILABLE, S.CIRCUIT_OPEN, ErrorClass.AUTH, 60.0)
    assert transition.alert == "auth_failed"
    assert breaker.admit(probe=True) is None
    straggler(breaker, ErrorClass.CONNECTION)
    assert breaker.record.last_error is ErrorClass.AUTH
    assert breaker.admit(probe=True) is None
    assert repr(breaker) == (
        "<CircuitBreaker 'groq-llama' OPEN failures=2 reopens_in=60.0s hold=auth>"
    )
    clock.advance(60)
    probe = breaker.admit()
    assert probe is not None
    assert probe.probe
    breaker.report(probe, Report(ErrorClass.AUTH))
    assert state_of(breaker) is S.CIRCUIT_OPEN
    assert breaker.record.break_seconds == 120


def test_not_found_opens_the_circuit_at_once_but_may_be_probed_early() -> None:
    """A 404 model-not-found opens at once; unlike auth it may be the early probe."""
    breaker, _ = make()
    transition = attempt(breaker, ErrorClass.NOT_FOUND)
    assert transition is not None
    assert transition.alert == "circuit_open"
    assert state_of(breaker) is S.CIRCUIT_OPEN
    probe = breaker.admit(probe=True)
    assert probe == Admission(NAME, probe=True, lease=1030.0)
    assert breaker.admit(probe=True) is None
    assert repr(breaker).endswith("reopens_in=60.0s probing>")


def test_early_probe_of_an_open_circuit() -> None:
    """SPEC rule 1: an open circuit may be probed before its break ends; failing grows the break."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(10)
    probe = breaker.admit(probe=True)
    assert probe is not None
    assert probe.probe
    assert breaker.report(probe, Report(ErrorClass.SERVER_ERROR)) is None
    assert breaker.status().until == 120
    clock.advance(5)
    probe = breaker.admit(probe=True)
    assert probe is not None
    assert breaker.report(probe, Report()) == Transition(NAME, S.CIRCUIT_OPEN, S.AVAILABLE, None)


def test_early_probe_of_a_rate_limited_deployment_ends_the_cooldown_on_success() -> None:
    """A 429 cooldown may be probed early; the probe's success makes the deployment available."""
    breaker, _ = make()
    attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=30)
    probe = breaker.admit(probe=True)
    assert probe is not None
    assert probe.probe
    breaker.report(probe, Report())
    assert state_of(breaker) is S.AVAILABLE


def test_early_probe_that_is_rate_limited_again_takes_the_new_retry_after() -> None:
    """The probe's own 429 replaces the cooldown with its Retry-After."""
    breaker, _ = make()
    attempt(breaker, ErrorClass.RATE_LIMIT, retry_after=30)
    probe = breaker.admit(probe=True)
    assert probe is not None
    breaker.report(probe, Report(ErrorClass.RATE_LIMIT, retry_after=5))
    assert breaker.status().until == 5


def test_half_open_probe_rate_limited_turns_into_a_cooldown() -> None:
    """A probe answered 429 shows the deployment is up but limited: rate_limited, not reopened."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(60)
    probe = breaker.admit()
    assert probe is not None
    transition = breaker.report(probe, Report(ErrorClass.RATE_LIMIT, retry_after=7))
    assert transition == Transition(NAME, S.HALF_OPEN, S.RATE_LIMITED, ErrorClass.RATE_LIMIT, 7.0)
    assert breaker.record.failures == 5
    clock.advance(7)
    attempt(breaker, ErrorClass.SERVER_ERROR)
    assert state_of(breaker) is S.CIRCUIT_OPEN
    assert breaker.record.break_seconds == 60


@pytest.mark.parametrize("error_class", [ErrorClass.CONTEXT_OVERFLOW, ErrorClass.BAD_REQUEST])
def test_request_faults_change_nothing(error_class: ErrorClass) -> None:
    """context_overflow and bad_request neither count nor reset nor open anything."""
    breaker, _ = make(threshold=2)
    attempt(breaker, ErrorClass.SERVER_ERROR)
    before = breaker.record
    for _ in range(5):
        assert attempt(breaker, error_class) is None
    assert breaker.record == before
    assert len(breaker.stats) == 1  # the server error only: request faults are no sample


@pytest.mark.parametrize("error_class", [ErrorClass.CONTEXT_OVERFLOW, ErrorClass.BAD_REQUEST])
def test_request_fault_of_a_probe_releases_its_lease(error_class: ErrorClass) -> None:
    """A probe answered with a request fault decides nothing but frees the slot."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(60)
    probe = breaker.admit()
    assert probe is not None
    breaker.report(probe, Report(error_class))
    assert state_of(breaker) is S.HALF_OPEN
    assert breaker.admit() is not None


def test_stragglers_do_not_extend_an_open_break() -> None:
    """Failures of attempts without the lease count but do not move the break's end."""
    breaker, clock = make()
    open_circuit(breaker)
    clock.advance(30)
    straggler(breaker, ErrorClass.SERVER_ERROR)
    straggler(breaker, ErrorClass.RATE_LIMIT)
    assert breaker.record.failures == 6
    assert breaker.status().until == 30


def test_straggler_success_closes_an_open_circuit() -> None:
    """Any upstream success proves the deployment answers: the circuit closes."""
    breaker, _ = make()
    open_circuit(breaker)
    assert straggler(breaker, None) == Transition(NAME, S.CIRCUIT_OPEN, S.AVAILABLE, None)
    assert breaker.record.failures == 0


def test_cancelled_attempt_changes_nothing() -> None:
    """An attempt failover ended itself is not a failure, nor a success."""
    breaker, _ = make(threshold=2)
    attempt(breaker, ErrorClass.SERVER_ERROR)
    before = breaker.record
    admission = breaker.admit()
    assert admission is not None
    assert breaker.report(admission, Report(cancelled=True, latency=4.0)) is None
    assert breaker.record == before


def test_not_configured_is_never_admitted() -> None:
    """A deployment without its key admits nothing, even as an early probe, and ignores reports."""
    breaker, _ = make(configured=False)
    assert state_of(breaker) is S.NOT_CONFIGURED
    assert breaker.admit() is None
    assert breaker.admit(probe=True) is None
    assert straggler(breaker, ErrorClass.SERVER_ERROR) is None
    assert state_of(breaker) is S.NOT_CONFIGURED
    assert len(breaker.stats) == 0
    assert repr(breaker) == "<CircuitBreaker 'groq-llama' NOT_CONFIGURED>"


def test_status_row() -> None:
    """status() gives state, failures, time left, last error, success rate and percentiles."""
    breaker, clock = make(threshold=2)
    attempt(breaker, latency=0.2)
    attempt(breaker, ErrorClass.TIMEOUT, latency=30.0)
    attempt(breaker, ErrorClass.CONNECTION, latency=0.01)
    clock.advance(15)
    status = breaker.status()
    assert status.as_dict() == {
        "deployment": NAME,
        "state": "circuit_open",
        "consecutive_failures": 2,
        "cooldown_ends_in": 45.0,
        "last_error": "connection",
        "probe_in_flight": False,
        "success_rate": 0.3333,
        "latency": {"p50": 0.2, "p95": 30.0, "p99": 30.0},
        "samples": 3,
    }


def test_cancelled_attempts_count_as_latency_samples() -> None:
    """A cancelled attempt is a latency sample of its elapsed time, not an outcome."""
    breaker, _ = make()
    for _ in range(3):
        attempt(breaker, latency=0.5)
    admission = breaker.admit()
    assert admission is not None
    breaker.report(admission, Report(cancelled=True, latency=9.0))
    status = breaker.status()
    assert status.success_rate == 1.0
    assert status.p99 == 9.0
    assert status.samples == 4
