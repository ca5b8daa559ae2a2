"""The whole exception tree of failover.

::

    FailoverError
    ├── ConfigError                  the config file or dict is invalid (carries the key path)
    ├── RejectedError                failover itself refused or gave up: no upstream outcome
    │   ├── NoTargetAvailable        every deployment is open, cooling down or not configured
    │   ├── DeadlineExceeded         the route's deadline passed (also a TimeoutError)
    │   ├── ClientRateLimited        an inbound client went over its limit
    │   └── UnknownModel             no route or deployment has the requested name
    ├── UpstreamError                an attempt produced an upstream outcome; carries its class
    │   ├── UpstreamTimeout          the attempt's own timeout (also a TimeoutError)
    │   ├── UpstreamConnectionError  connect error or reset
    │   │   └── ConnectionUnavailable  no free connection in time: not the upstream's outcome
    │   ├── UpstreamStatusError      the provider answered an error status or error event
    │   └── MalformedResponse        a 200 whose body is not a valid completion
    └── AllTargetsFailed             every attempt failed; carries each attempt's error

Foreign exceptions (aiohttp, redis, asyncpg, ...) are translated into this tree once, at the edge
that talks to them, and never escape it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

__all__ = [
    "AllTargetsFailed",
    "ClientRateLimited",
    "ConfigError",
    "ConnectionUnavailable",
    "DeadlineExceeded",
    "ErrorClass",
    "FailoverError",
    "MalformedResponse",
    "NoTargetAvailable",
    "RejectedError",
    "UnknownModel",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
]


class ErrorClass(enum.StrEnum):
    """The failure classes of SPEC.md's table; each decides retry, fallback and health."""

    CONNECTION = "connection"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"
    AUTH = "auth"
    CONTEXT_OVERFLOW = "context_overflow"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    SERVER_ERROR = "server_error"
    MALFORMED = "malformed"

    @property
    def retryable(self) -> bool:
        """May the same deployment be tried again after this failure."""
        return self in _RETRYABLE

    @property
    def moves_on(self) -> bool:
        """Does this failure send the request to the next target (rule 9: a 400 does not)."""
        return self is not ErrorClass.BAD_REQUEST


_RETRYABLE = frozenset(
    {
        ErrorClass.CONNECTION,
        ErrorClass.TIMEOUT,
        ErrorClass.RATE_LIMIT,
        ErrorClass.SERVER_ERROR,
        ErrorClass.MALFORMED,
    }
)


class FailoverError(Exception):
    """Root of every error failover raises."""


class ConfigError(FailoverError, ValueError):
    """The configuration is invalid; ``path`` names the key, e.g. ``routes.intent.deadline``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class RejectedError(FailoverError):
    """Failover refused or gave up without an upstream outcome."""


class NoTargetAvailable(RejectedError):
    """Every deployment of the route is unavailable and no probe could be taken."""

    def __init__(self, route: str, retry_after: float | None) -> None:
        self.route = route
        self.retry_after = retry_after
        super().__init__(f"route {route!r}: no deployment is available")


class DeadlineExceeded(RejectedError, TimeoutError):
    """The route's whole-request deadline passed before any attempt succeeded."""

    def __init__(self, route: str, deadline: float) -> None:
        self.route = route
        self.deadline = deadline
        super().__init__(f"route {route!r}: deadline of {deadline:g}s passed")


class ClientRateLimited(RejectedError):
    """An inbound client went over its configured limit."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limit exceeded; retry after {retry_after:.0f}s")


class UnknownModel(RejectedError, LookupError):
    """No route or deployment is named ``model``."""

    def __init__(self, model: str, known: Sequence[str] = ()) -> None:
        self.model = model
        self.known = tuple(known)
        hint = f"; known: {', '.join(self.known)}" if self.known else ""
        super().__init__(f"unknown model {model!r}{hint}")


class UpstreamError(FailoverError):
    """An attempt failed with an outcome the upstream produced.

    ``status`` is the HTTP status (``None`` when there was none), ``retry_after`` the seconds the
    provider asked us to wait, ``code`` and ``type`` the provider's own error code and type when it
    gave them. The message never contains a key.
    """

    error_class: ErrorClass = ErrorClass.SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        deployment: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        error_class: ErrorClass | None = None,
        code: str | None = None,
        type: str | None = None,  # mirrors OpenAI's error.type
    ) -> None:
        if error_class is not None:
            self.error_class = error_class
        self.message = message
        self.deployment = deployment
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.type = type
        super().__init__(message)

    def __repr__(self) -> str:
        parts = [f"{self.error_class.value}", repr(self.message)]
        if self.deployment:
            parts.append(f"deployment={self.deployment!r}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}")
        return f"<{type(self).__name__} {' '.join(parts)}>"


class UpstreamTimeout(UpstreamError, TimeoutError):
    """The attempt's own ``timeout`` passed (or the provider answered 408/409)."""

    error_class = ErrorClass.TIMEOUT


class UpstreamConnectionError(UpstreamError):
    """The connection could not be made or was reset."""

    error_class = ErrorClass.CONNECTION


class ConnectionUnavailable(UpstreamConnectionError):
    """No connection to the deployment's origin was free within the client's wait: every one
    was busy (perhaps hung), and nothing was sent. The attempt fails like a connection error, but
    the upstream produced no outcome, so its deployment's health is not told (SPEC rule 7)."""


class UpstreamStatusError(UpstreamError):
    """The provider answered an error status, or sent an error event inside a stream."""


class MalformedResponse(UpstreamError):
    """A 200 whose body is not a valid completion (SPEC rule 10)."""

    error_class = ErrorClass.MALFORMED


class AllTargetsFailed(FailoverError):
    """Every attempt of the request failed and the route has no default response.

    ``errors`` holds each failed attempt's error in the order they ended; ``deadline_passed`` is
    true when the deadline cut the request short.
    """

    def __init__(
        self,
        route: str,
        errors: Sequence[UpstreamError | RejectedError],
        *,
        deadline_passed: bool = False,
    ) -> None:
        self.route = route
        self.errors = tuple(errors)
        self.deadline_passed = deadline_passed
        last = self.errors[-1] if self.errors else None
        detail = f": last error {last}" if last is not None else ""
        super().__init__(f"route {route!r}: every attempt failed{detail}")
