"""The whole exception tree of failover.

::

    FailoverError
    ├── ConfigError                  the config file or dict is invalid (carries the key path)
    ├── InvalidRequest               a client's request is not valid (carries the field)
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
    ├── AllTargetsFailed             every attempt failed; carries each attempt's error
    ├── StoreError                   the request log failed (no URL, no password in it)
    │   ├── StoreUnavailable         it could not be reached, or not in time
    │   └── StoreRejected            it refused the statement or the data
    ├── StateUnavailable             the shared Redis state did not answer, or answered an error
    ├── StatusUnavailable            ``failover status`` could not read a gateway's status
    └── CannotListen                 ``failover serve``'s address is taken or not ours to bind

How a request that failed is answered is decided once, by :func:`failure_of`: a
:class:`Failure` names the kind of failure (the HTTP server maps kinds to statuses at its edge,
``server/status.py``), the code that records, metrics and answers give, and the Retry-After.

Foreign exceptions (aiohttp, redis, asyncpg, ...) are translated into this tree once, at the edge
that talks to them, and never escape it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from failover.types import AttemptRecord

__all__ = [
    "AllTargetsFailed",
    "CannotListen",
    "ClientRateLimited",
    "ConfigError",
    "ConnectionUnavailable",
    "DeadlineExceeded",
    "ErrorClass",
    "FailoverError",
    "Failure",
    "FailureKind",
    "InvalidRequest",
    "MalformedResponse",
    "NoTargetAvailable",
    "RejectedError",
    "StateUnavailable",
    "StatusUnavailable",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "UnknownModel",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "failure_of",
]


class ErrorClass(enum.StrEnum):
    """The failure classes of the failure table; each decides retry, fallback and health."""

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
    """Every deployment of the route is unavailable and no probe could be taken.

    ``attempts`` is the request's list of attempt records (empty: nothing was tried).
    """

    def __init__(
        self,
        route: str,
        retry_after: float | None,
        *,
        attempts: Sequence[AttemptRecord] = (),
    ) -> None:
        self.route = route
        self.retry_after = retry_after
        self.attempts = attempts
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
    the upstream produced no outcome, so its deployment's health is not told (rule 7)."""


class UpstreamStatusError(UpstreamError):
    """The provider answered an error status, or sent an error event inside a stream."""


class MalformedResponse(UpstreamError):
    """A 200 whose body is not a valid completion (rule 10)."""

    error_class = ErrorClass.MALFORMED


class AllTargetsFailed(FailoverError):
    """Every attempt of the request failed and the route has no default response.

    ``errors`` holds each failed attempt's error in the order they ended; ``deadline_passed`` is
    true when the deadline cut the request short. ``attempts`` is the request's list of attempt
    records, the engine's own (not a copy): a loser still running in the background completes its
    record in it later.
    """

    def __init__(
        self,
        route: str,
        errors: Sequence[UpstreamError | RejectedError],
        *,
        deadline_passed: bool = False,
        attempts: Sequence[AttemptRecord] = (),
    ) -> None:
        self.route = route
        self.errors = tuple(errors)
        self.deadline_passed = deadline_passed
        self.attempts = attempts
        last = self.errors[-1] if self.errors else None
        detail = f": last error {last}" if last is not None else ""
        super().__init__(f"route {route!r}: every attempt failed{detail}")


class InvalidRequest(FailoverError, ValueError):
    """A client's request is not valid for its API; ``param`` names the field, ``code`` says
    what is wrong with it (``missing``, ``invalid_type``, ``json_too_deep``, ...)."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value"):
        self.message = message
        self.param = param
        self.code = code
        super().__init__(message)


class StoreError(FailoverError):
    """The request log store failed; the message names no URL and no password."""


class StoreUnavailable(StoreError):
    """The store could not be reached, or did not answer in time."""


class StoreRejected(StoreError):
    """The store answered but refused the statement or the data."""


class StateUnavailable(FailoverError):
    """Redis did not answer in time or answered an error; the message names no URL or secret."""


class StatusUnavailable(FailoverError):
    """A gateway's status could not be read; the message says why."""


class CannotListen(FailoverError):
    """The address is taken, or not this process' to bind."""


# -- how a failed request is answered ------------------------------------------------------------


class FailureKind(enum.StrEnum):
    """What a request's failure amounts to, as a client is told of it (docs/semantics.md, "How a
    failed request is answered"); the HTTP server gives each kind its status."""

    DEADLINE = "deadline"  # the deadline passed first
    TIMEOUT = "timeout"  # every failure was a timeout
    UNAVAILABLE = "unavailable"  # every failure was a rate limit, a quota or an open circuit
    CONTEXT_OVERFLOW = "context_overflow"  # every target's context overflowed
    BAD_REQUEST = "bad_request"  # the provider's own 4xx (rule 9)
    UPSTREAM = "upstream"  # anything else the providers did
    CLIENT_LIMITED = "client_limited"  # an inbound client over its limit
    INTERNAL = "internal"  # a bug


class Failure(NamedTuple):
    """A failed request: its kind, the code records and answers give, and Retry-After."""

    kind: FailureKind
    code: str
    retry_after: float | None = None


_OPEN_CIRCUIT = "circuit_open"
_UNAVAILABLE = frozenset({ErrorClass.RATE_LIMIT.value, ErrorClass.QUOTA.value, _OPEN_CIRCUIT})


def failure_of(exc: BaseException) -> Failure:
    """What ``exc``, raised for a request, tells its client.

    >>> failure_of(AllTargetsFailed("intent", [UpstreamTimeout("slow")]))
    Failure(kind=<FailureKind.TIMEOUT: 'timeout'>, code='timeout', retry_after=None)
    >>> failure_of(NoTargetAvailable("intent", retry_after=12.0)).code
    'circuit_open'
    """
    if isinstance(exc, AllTargetsFailed):
        return _all_failed(exc)
    if isinstance(exc, NoTargetAvailable):
        return Failure(FailureKind.UNAVAILABLE, _OPEN_CIRCUIT, exc.retry_after)
    if isinstance(exc, DeadlineExceeded):
        return Failure(FailureKind.DEADLINE, "deadline_exceeded")
    if isinstance(exc, ClientRateLimited):
        return Failure(FailureKind.CLIENT_LIMITED, "rate_limit_exceeded", exc.retry_after)
    if isinstance(exc, UpstreamError):
        return _upstream(exc)
    return Failure(FailureKind.INTERNAL, "internal_error")


def _all_failed(exc: AllTargetsFailed) -> Failure:
    if exc.deadline_passed:
        return Failure(FailureKind.DEADLINE, "deadline_exceeded")
    if not exc.errors:
        return Failure(FailureKind.UPSTREAM, "upstream_error")
    kinds = {_kind(error) for error in exc.errors}
    last = _kind(exc.errors[-1])
    if kinds == {ErrorClass.TIMEOUT.value}:
        return Failure(FailureKind.TIMEOUT, ErrorClass.TIMEOUT.value)
    if kinds <= _UNAVAILABLE:
        return Failure(FailureKind.UNAVAILABLE, last, _soonest_retry_after(exc.errors))
    if kinds == {ErrorClass.CONTEXT_OVERFLOW.value}:
        return Failure(FailureKind.CONTEXT_OVERFLOW, "context_length_exceeded")
    return Failure(FailureKind.UPSTREAM, last)


def _kind(error: UpstreamError | RejectedError) -> str:
    if isinstance(error, UpstreamError):
        return error.error_class.value
    if isinstance(error, DeadlineExceeded):
        return ErrorClass.TIMEOUT.value
    if isinstance(error, NoTargetAvailable):
        return _OPEN_CIRCUIT
    return "rejected"


def _upstream(exc: UpstreamError) -> Failure:
    error_class = exc.error_class
    if error_class is ErrorClass.BAD_REQUEST:
        return Failure(FailureKind.BAD_REQUEST, exc.code or error_class.value)
    if error_class is ErrorClass.TIMEOUT:
        return Failure(FailureKind.TIMEOUT, error_class.value)
    if error_class in _UNAVAILABLE:
        return Failure(FailureKind.UNAVAILABLE, error_class.value, exc.retry_after)
    return Failure(FailureKind.UPSTREAM, error_class.value)


def _soonest_retry_after(errors: Sequence[UpstreamError | RejectedError]) -> float | None:
    waits = [e.retry_after for e in errors if isinstance(e, UpstreamError | NoTargetAvailable)]
    known = [wait for wait in waits if wait is not None]
    return min(known) if known else None
