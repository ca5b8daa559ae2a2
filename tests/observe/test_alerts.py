"""Alert rules: each type at its level, from engine events and health transitions."""

from __future__ import annotations

from typing import Any

from failover.clock import ManualClock
from failover.config import AlertLevel, RouteConfig, config_from_dict
from failover.engine.events import Event, EventKind
from failover.engine.route import HedgePolicy
from failover.errors import (
    AllTargetsFailed,
    ErrorClass,
    MalformedResponse,
    UpstreamStatusError,
    UpstreamTimeout,
)
from failover.health.base import DeploymentState
from failover.health.breaker import Transition
from failover.observe.alerts import Alert, AlertRules, AlertType, primary_timeout_alert_due
from failover.providers.redact import Redactor
from failover.types import AttemptRecord

ROUTES = {
    "intent": RouteConfig(
        name="intent", targets=("main", "fallback"), hedge_after=1.5, default_response="X"
    ),
    "auto": RouteConfig(name="auto", targets=("main", "fallback"), hedge_after="auto"),
    "strict": RouteConfig(name="strict", targets=("main", "fallback")),
}


def _rules(clock: ManualClock | None = None) -> AlertRules:
    return AlertRules(
        ROUTES, redact=Redactor(), clock=clock or ManualClock(), wall_clock=lambda: 1234.5
    )


def _event(kind: EventKind, route: str = "intent", **fields: Any) -> Event:
    return Event(kind, route, "req_1", 1.5, **fields)


def _check(alert: Alert | None, kind: AlertType, level: AlertLevel, deployment: str | None) -> None:
    assert alert is not None
    assert (alert.type, alert.level, alert.deployment) == (kind, level, deployment)
    assert alert.time == 1234.5


def test_primary_timeout_is_high() -> None:
    """A late first target with a fixed hedge_after raises HIGH primary_timeout."""
    alert = _rules().on_event(_event(EventKind.PRIMARY_TIMEOUT, deployment="main"))
    _check(alert, AlertType.PRIMARY_TIMEOUT, AlertLevel.HIGH, "main")
    assert alert is not None
    assert alert.route == "intent"
    assert alert.request_id == "req_1"
    assert "1.5s" in alert.message


def test_primary_timeout_with_auto_needs_a_high_hedge_rate() -> None:
    """With hedge_after: auto, only a hedge rate above 10% over the last minute alerts."""
    policy = {name: HedgePolicy.of(config) for name, config in ROUTES.items()}
    assert primary_timeout_alert_due(policy["intent"], 0.0)
    assert not primary_timeout_alert_due(policy["auto"], 0.10)
    assert primary_timeout_alert_due(policy["auto"], 0.11)
    assert not primary_timeout_alert_due(policy["strict"], 1.0)
    clock = ManualClock()
    rules = _rules(clock)
    late = _event(EventKind.PRIMARY_TIMEOUT, route="auto", deployment="main")
    for _ in range(20):
        rules.request_finished("auto")
    rules.on_event(_event(EventKind.HEDGE_STARTED, route="auto", deployment="fallback"))
    assert rules.on_event(late) is None  # 1 hedge in 20 requests: 5%
    for _ in range(2):
        rules.on_event(_event(EventKind.HEDGE_STARTED, route="auto", deployment="fallback"))
    _check(rules.on_event(late), AlertType.PRIMARY_TIMEOUT, AlertLevel.HIGH, "main")  # 15%
    clock.advance(61)  # the minute has passed: the window is empty again
    assert rules.on_event(late) is None


def test_all_failed_is_critical() -> None:
    """Every attempt failing is CRITICAL all_failed, saying what the client got."""
    error = AllTargetsFailed("intent", [UpstreamTimeout("slow"), UpstreamTimeout("slow")])
    alert = _rules().on_event(_event(EventKind.ALL_FAILED, error=error))
    _check(alert, AlertType.ALL_FAILED, AlertLevel.CRITICAL, None)
    assert alert is not None
    assert "timeout" in alert.message
    assert "default response" in alert.message
    strict = _rules().on_event(_event(EventKind.ALL_FAILED, route="strict", error=error))
    assert strict is not None
    assert "an error" in strict.message


def test_malformed_response_is_medium() -> None:
    """An attempt ended by a malformed body raises MEDIUM malformed_response."""
    record = AttemptRecord("fallback", 0.0, 0.2, "malformed", error_class="malformed")
    error = MalformedResponse("no choices", deployment="fallback")
    alert = _rules().on_event(
        _event(EventKind.ATTEMPT_ENDED, deployment="fallback", attempt=record, error=error)
    )
    _check(alert, AlertType.MALFORMED_RESPONSE, AlertLevel.MEDIUM, "fallback")
    assert alert is not None
    assert "no choices" in alert.message
    other = AttemptRecord("main", 0.0, 0.2, "server_error", error_class="server_error")
    assert _rules().on_event(_event(EventKind.ATTEMPT_ENDED, attempt=other)) is None


def test_bad_request_translation_is_medium() -> None:
    """A 400 from a target other than the first raises MEDIUM bad_request_translation."""
    error = UpstreamStatusError("unknown field", status=400, error_class=ErrorClass.BAD_REQUEST)
    alert = _rules().on_event(
        _event(EventKind.BAD_REQUEST_TRANSLATION, deployment="fallback", error=error)
    )
    _check(alert, AlertType.BAD_REQUEST_TRANSLATION, AlertLevel.MEDIUM, "fallback")


def test_other_events_raise_nothing() -> None:
    """Attempt starts, successes, hedges and defaults are not alerts."""
    rules = _rules()
    record = AttemptRecord("main", 0.0, 0.2, "success")
    for kind in (EventKind.ATTEMPT_STARTED, EventKind.ATTEMPT_ENDED, EventKind.DEFAULT_SERVED):
        assert rules.on_event(_event(kind, deployment="main", attempt=record)) is None


def test_transitions() -> None:
    """Circuit open, auth, rate limit and quota transitions raise their alerts; recovery none."""
    rules = _rules()
    failed = AttemptRecord("main", 0.0, 0.2, "auth", error_class="auth")
    rules.on_event(_event(EventKind.ATTEMPT_ENDED, deployment="main", attempt=failed))
    available, open_ = DeploymentState.AVAILABLE, DeploymentState.CIRCUIT_OPEN
    limited = DeploymentState.RATE_LIMITED
    cases = [
        (open_, ErrorClass.SERVER_ERROR, AlertType.CIRCUIT_OPEN, AlertLevel.CRITICAL),
        (open_, ErrorClass.AUTH, AlertType.AUTH_FAILED, AlertLevel.CRITICAL),
        (limited, ErrorClass.RATE_LIMIT, AlertType.RATE_LIMITED, AlertLevel.HIGH),
        (limited, ErrorClass.QUOTA, AlertType.QUOTA_EXHAUSTED, AlertLevel.CRITICAL),
    ]
    for after, error_class, kind, level in cases:
        alert = rules.on_transition(Transition("main", available, after, error_class, 60.0))
        _check(alert, kind, level, "main")
        assert alert is not None
        assert alert.route == "intent"
        assert alert.request_id == "req_1"
        assert "60s" in alert.message
    recovered = Transition("main", DeploymentState.HALF_OPEN, available, None)
    assert rules.on_transition(recovered) is None


def test_alert_shapes() -> None:
    """An alert reads as one line and as a Slack-compatible JSON object."""
    alert = Alert(AlertLevel.HIGH, AlertType.RATE_LIMITED, None, "main", None, "cooling", 0.0)
    assert alert.text == "[HIGH] rate_limited deployment=main: cooling"
    assert alert.as_dict() == {
        "text": "[HIGH] rate_limited deployment=main: cooling",
        "level": "HIGH",
        "type": "rate_limited",
        "route": None,
        "deployment": "main",
        "request_id": None,
        "message": "cooling",
        "time": "1970-01-01T00:00:00.000Z",
    }


def test_hedge_rate_window_forgets_old_requests() -> None:
    """A route that never hedges keeps only its last minute of requests, not 10,000."""
    config = config_from_dict(
        {
            "store": {"url": "none"},
            "deployments": {"main": {"provider": "openai", "model": "m", "api_key": "sk-x"}},
            "routes": {"intent": {"targets": ["main"]}},
        }
    )
    clock = ManualClock()
    rules = AlertRules(config.routes, redact=str, clock=clock)
    for _ in range(12_000):  # 20 a second for 10 minutes
        rules.request_finished("intent")
        clock.advance(0.05)
    assert len(rules._hedging["intent"].requests) <= 60 / 0.05 + 1
