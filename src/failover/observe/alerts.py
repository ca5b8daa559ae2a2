"""Alerts: which moments deserve one, at which level, and what they say (docs/semantics.md).

=========================  ========  ==================================================
type                       level     raised when
=========================  ========  ==================================================
primary_timeout            HIGH      the first target passed a fixed ``hedge_after``; with
                                     ``auto``, only while the route's hedge rate over the last
                                     minute is above twice the expected 5%
rate_limited               HIGH      a deployment went into a rate-limit cooldown
all_failed                 CRITICAL  a request was answered with its default or an error
circuit_open               CRITICAL  a deployment's circuit opened
auth_failed                CRITICAL  a deployment's key was refused (401/403)
quota_exhausted            CRITICAL  a deployment ran out of quota or credit
malformed_response         MEDIUM    a 200 whose body was not a valid completion
bad_request_translation    MEDIUM    a target other than the route's first answered 400
=========================  ========  ==================================================

:class:`AlertRules` turns engine events and health transitions into :class:`Alert` values; the
sinks (:mod:`~failover.observe.sinks`) decide where they go. An alert's message is built from
names and error classes and goes through the redactor: it never holds a key. A provider's words
in it (the 400 of a ``bad_request_translation``) are outside text: they may hold line breaks and
terminal escapes, which the log sink writes escaped (:mod:`failover.logsafe`).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from failover.clock import Clock
from failover.config import AlertLevel, RouteConfig
from failover.engine.events import Event, EventKind
from failover.engine.route import NO_HEDGING, HedgeMode, HedgePolicy
from failover.errors import ErrorClass, failure_of
from failover.health.breaker import Transition

__all__ = [
    "EXPECTED_HEDGE_RATE",
    "LEVELS",
    "Alert",
    "AlertRules",
    "AlertType",
    "primary_timeout_alert_due",
]


class AlertType(enum.StrEnum):
    """The kinds of alert failover raises."""

    PRIMARY_TIMEOUT = "primary_timeout"
    RATE_LIMITED = "rate_limited"
    ALL_FAILED = "all_failed"
    CIRCUIT_OPEN = "circuit_open"
    AUTH_FAILED = "auth_failed"
    QUOTA_EXHAUSTED = "quota_exhausted"
    MALFORMED_RESPONSE = "malformed_response"
    BAD_REQUEST_TRANSLATION = "bad_request_translation"


LEVELS: Mapping[AlertType, AlertLevel] = {
    AlertType.PRIMARY_TIMEOUT: AlertLevel.HIGH,
    AlertType.RATE_LIMITED: AlertLevel.HIGH,
    AlertType.ALL_FAILED: AlertLevel.CRITICAL,
    AlertType.CIRCUIT_OPEN: AlertLevel.CRITICAL,
    AlertType.AUTH_FAILED: AlertLevel.CRITICAL,
    AlertType.QUOTA_EXHAUSTED: AlertLevel.CRITICAL,
    AlertType.MALFORMED_RESPONSE: AlertLevel.MEDIUM,
    AlertType.BAD_REQUEST_TRANSLATION: AlertLevel.MEDIUM,
}
"""Each alert type's level."""

EXPECTED_HEDGE_RATE = 0.05
"""The share of requests ``hedge_after: auto`` is meant to hedge (its p95 target)."""

HEDGE_RATE_WINDOW = 60.0


def primary_timeout_alert_due(policy: HedgePolicy, hedge_rate: float) -> bool:
    """Whether a late primary deserves its HIGH alert: always with a fixed ``hedge_after``;
    with ``auto`` only when the recent hedge rate is above twice the expected 5%.

    >>> fixed = HedgePolicy(HedgeMode.FIXED, 1.5)
    >>> auto = HedgePolicy(HedgeMode.AUTO, 10.0, (0.2, 10.0))
    >>> primary_timeout_alert_due(fixed, 0.0), primary_timeout_alert_due(auto, 0.08)
    (True, False)
    >>> primary_timeout_alert_due(auto, 0.12)
    True
    """
    if policy.mode is HedgeMode.NONE:
        return False
    if policy.mode is HedgeMode.AUTO:
        return hedge_rate > 2 * EXPECTED_HEDGE_RATE
    return True


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: ``time`` is epoch seconds; route, deployment and request id may be unknown.

    >>> alert = Alert(AlertLevel.CRITICAL, AlertType.ALL_FAILED, "intent", None, "req_1",
    ...               "every attempt failed", 0.0)
    >>> alert.text
    '[CRITICAL] all_failed route=intent request=req_1: every attempt failed'
    """

    level: AlertLevel
    type: AlertType
    route: str | None
    deployment: str | None
    request_id: str | None
    message: str
    time: float

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What deduplication compares: the same (type, route, deployment) is the same alert."""
        return (self.type.value, self.route, self.deployment)

    @property
    def text(self) -> str:
        """One line for humans (a chat message, a log line)."""
        where = [
            f"{name}={value}"
            for name, value in (
                ("route", self.route),
                ("deployment", self.deployment),
                ("request", self.request_id),
            )
            if value
        ]
        head = " ".join([f"[{self.level.name}]", self.type.value, *where])
        return f"{head}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON a webhook receives; ``text`` makes it a valid Slack message as it is."""
        moment = datetime.fromtimestamp(self.time, tz=UTC)
        return {
            "text": self.text,
            "level": self.level.name,
            "type": self.type.value,
            "route": self.route,
            "deployment": self.deployment,
            "request_id": self.request_id,
            "message": self.message,
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }


class _HedgeRate:
    """Requests and hedges of one route over the last minute (bounded)."""

    __slots__ = ("hedges", "requests")

    def __init__(self, limit: int = 10_000) -> None:
        self.requests: deque[float] = deque(maxlen=limit)
        self.hedges: deque[float] = deque(maxlen=limit)

    @staticmethod
    def add(times: deque[float], now: float) -> None:
        """Record a moment in ``times``, forgetting those past the window: without it, a route
        that never hedges keeps ``limit`` stale moments (~0.3 MB) for good."""
        times.append(now)
        while times[0] < now - HEDGE_RATE_WINDOW:
            times.popleft()

    def rate(self, now: float) -> float:
        for times in (self.requests, self.hedges):
            while times and times[0] < now - HEDGE_RATE_WINDOW:
                times.popleft()
        return len(self.hedges) / len(self.requests) if self.requests else 0.0


class AlertRules:
    """Decides the alert (or none) for each engine event and health transition.

    ``routes`` gives each route's default response and its hedge policy (read once, by
    :meth:`HedgePolicy.of <failover.engine.route.HedgePolicy.of>`, as the engine reads it);
    ``redact`` cleans every message; ``clock`` (monotonic) times the hedge-rate window,
    ``wall_clock`` dates alerts.
    """

    def __init__(
        self,
        routes: Mapping[str, RouteConfig],
        *,
        redact: Callable[[str], str],
        clock: Clock,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._routes = routes
        self._hedge = {name: HedgePolicy.of(route) for name, route in routes.items()}
        self._redact = redact
        self._clock = clock
        self._wall_clock = wall_clock
        self._hedging: dict[str, _HedgeRate] = {}
        # The request whose failure most recently reached each deployment: a health transition
        # names no request, but it is caused by the report that follows that failure.
        self._last_failure: dict[str, tuple[str, str]] = {}

    def on_event(self, event: Event) -> Alert | None:
        """The alert ``event`` deserves, if any."""
        kind = event.kind
        if kind is EventKind.ATTEMPT_ENDED:
            return self._attempt_ended(event)
        if kind is EventKind.HEDGE_STARTED:
            _HedgeRate.add(self._window(event.route).hedges, self._clock.now())
            return None
        if kind is EventKind.PRIMARY_TIMEOUT:
            policy = self._hedge.get(event.route, NO_HEDGING)
            rate = self._window(event.route).rate(self._clock.now())
            if not primary_timeout_alert_due(policy, rate):
                return None
            late = f"{policy.delay:g}s" if policy.mode is HedgeMode.FIXED else "its hedge delay"
            return self._alert(
                AlertType.PRIMARY_TIMEOUT,
                event,
                f"the first target had not answered after {late}; the next one was started",
            )
        if kind is EventKind.BAD_REQUEST_TRANSLATION:
            return self._alert(
                AlertType.BAD_REQUEST_TRANSLATION,
                event,
                f"answered 400 ({self._error_text(event.error)}) where the route's first target "
                "did not: the request is probably not translated well for this provider",
            )
        if kind is EventKind.ALL_FAILED:
            return self._all_failed(event)
        return None

    def request_finished(self, route: str) -> None:
        """Count a request in its route's hedge rate."""
        _HedgeRate.add(self._window(route).requests, self._clock.now())

    def on_transition(self, transition: Transition) -> Alert | None:
        """The alert a deployment's health change deserves (circuit open, cooldown), if any."""
        name = transition.alert
        if name is None:
            return None
        alert_type = AlertType(name)
        route, request_id = self._last_failure.get(transition.deployment, (None, None))
        cause = transition.error_class.value if transition.error_class else "failures"
        lasts = f" for {transition.seconds:.0f}s" if transition.seconds is not None else ""
        messages = {
            AlertType.CIRCUIT_OPEN: f"circuit opened{lasts} after {cause}",
            AlertType.AUTH_FAILED: f"the provider refused the key; circuit opened{lasts}",
            AlertType.RATE_LIMITED: f"rate limited; cooling down{lasts}",
            AlertType.QUOTA_EXHAUSTED: f"quota or credit exhausted; cooling down{lasts}",
        }
        return Alert(
            level=LEVELS[alert_type],
            type=alert_type,
            route=route,
            deployment=transition.deployment,
            request_id=request_id,
            message=self._redact(messages.get(alert_type, cause)),
            time=self._wall_clock(),
        )

    def _attempt_ended(self, event: Event) -> Alert | None:
        record = event.attempt
        if record is None or record.error_class is None:
            return None
        self._last_failure[record.deployment] = (event.route, event.request_id)
        if record.error_class != ErrorClass.MALFORMED.value:
            return None
        return self._alert(
            AlertType.MALFORMED_RESPONSE,
            event,
            "answered 200 with a body that is not a valid completion "
            f"({self._error_text(event.error)})",
            deployment=record.deployment,
        )

    def _all_failed(self, event: Event) -> Alert:
        route = self._routes.get(event.route)
        default = route is not None and route.default_response is not None
        answer = "the default response" if default else "an error"
        code = failure_of(event.error).code if event.error is not None else "unknown"
        return self._alert(
            AlertType.ALL_FAILED,
            event,
            f"no target answered ({code}); the client got {answer}",
        )

    def _alert(
        self, alert_type: AlertType, event: Event, message: str, *, deployment: str | None = None
    ) -> Alert:
        return Alert(
            level=LEVELS[alert_type],
            type=alert_type,
            route=event.route,
            deployment=deployment or event.deployment,
            request_id=event.request_id,
            message=self._redact(message),
            time=self._wall_clock(),
        )

    def _error_text(self, error: BaseException | None) -> str:
        """The error's words for a message: redacted whole first, then cut (a key the cut went
        through would otherwise keep its first characters)."""
        if error is None:
            return "no detail"
        text = self._redact(str(error).strip() or type(error).__name__)
        return text if len(text) <= 300 else text[:297] + "..."

    def _window(self, route: str) -> _HedgeRate:
        window = self._hedging.get(route)
        if window is None:
            window = self._hedging[route] = _HedgeRate()
        return window

    def __repr__(self) -> str:
        return f"<AlertRules routes={len(self._routes)}>"
