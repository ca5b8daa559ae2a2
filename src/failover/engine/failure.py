"""How a request that failed is answered over HTTP: one pure function the server and tests share.

SPEC's HTTP API: when every attempt failed and there is no default, 504 if the deadline passed or
every failure was a timeout; 503 with Retry-After if every failure was a rate limit, a quota or an
open circuit; 400 ``context_length_exceeded`` if every target overflowed; else 502 with the class
of the failure that came last. A bad request (rule 9) is the provider's own 400 as it worded it.
"""

from __future__ import annotations

from typing import NamedTuple

from failover.errors import (
    AllTargetsFailed,
    ClientRateLimited,
    DeadlineExceeded,
    ErrorClass,
    NoTargetAvailable,
    RejectedError,
    UpstreamError,
)

__all__ = ["FailureStatus", "failure_status"]


class FailureStatus(NamedTuple):
    """An error answer: HTTP status, OpenAI ``error.code``, and Retry-After seconds (or None)."""

    status: int
    code: str
    retry_after: float | None


# What a failure counts as when all of them are weighed: its class, or failover's own refusals.
_OPEN_CIRCUIT = "circuit_open"
_UNAVAILABLE = frozenset({ErrorClass.RATE_LIMIT.value, ErrorClass.QUOTA.value, _OPEN_CIRCUIT})


def failure_status(exc: BaseException) -> FailureStatus:
    """The HTTP answer for an error the engine raised.

    >>> from failover.errors import UpstreamTimeout
    >>> failure_status(AllTargetsFailed("intent", [UpstreamTimeout("slow")]))
    FailureStatus(status=504, code='timeout', retry_after=None)
    >>> failure_status(NoTargetAvailable("intent", retry_after=12.0))
    FailureStatus(status=503, code='circuit_open', retry_after=12.0)
    """
    if isinstance(exc, AllTargetsFailed):
        return _all_failed(exc)
    if isinstance(exc, NoTargetAvailable):
        return FailureStatus(503, _OPEN_CIRCUIT, exc.retry_after)
    if isinstance(exc, DeadlineExceeded):
        return FailureStatus(504, "deadline_exceeded", None)
    if isinstance(exc, ClientRateLimited):
        return FailureStatus(429, "rate_limit_exceeded", exc.retry_after)
    if isinstance(exc, UpstreamError):
        return _upstream(exc)
    return FailureStatus(500, "internal_error", None)


def _all_failed(exc: AllTargetsFailed) -> FailureStatus:
    if exc.deadline_passed:
        return FailureStatus(504, "deadline_exceeded", None)
    if not exc.errors:
        return FailureStatus(502, "upstream_error", None)
    kinds = {_kind(error) for error in exc.errors}
    last = _kind(exc.errors[-1])
    if kinds == {ErrorClass.TIMEOUT.value}:
        return FailureStatus(504, ErrorClass.TIMEOUT.value, None)
    if kinds <= _UNAVAILABLE:
        return FailureStatus(503, last, _soonest_retry_after(exc.errors))
    if kinds == {ErrorClass.CONTEXT_OVERFLOW.value}:
        return FailureStatus(400, "context_length_exceeded", None)
    return FailureStatus(502, last, None)


def _kind(error: UpstreamError | RejectedError) -> str:
    if isinstance(error, UpstreamError):
        return error.error_class.value
    if isinstance(error, DeadlineExceeded):
        return ErrorClass.TIMEOUT.value
    if isinstance(error, NoTargetAvailable):
        return _OPEN_CIRCUIT
    return "rejected"


def _upstream(exc: UpstreamError) -> FailureStatus:
    if exc.error_class is ErrorClass.BAD_REQUEST:
        # The provider's own 400 (or 413, 422) as it worded it: the client must fix its request.
        status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 400
        return FailureStatus(status, exc.code or exc.error_class.value, None)
    if exc.error_class is ErrorClass.TIMEOUT:
        return FailureStatus(504, exc.error_class.value, None)
    if exc.error_class in _UNAVAILABLE:
        return FailureStatus(503, exc.error_class.value, exc.retry_after)
    return FailureStatus(502, exc.error_class.value, None)


def _soonest_retry_after(errors: tuple[UpstreamError | RejectedError, ...]) -> float | None:
    waits = [e.retry_after for e in errors if isinstance(e, UpstreamError | NoTargetAvailable)]
    known = [wait for wait in waits if wait is not None]
    return min(known) if known else None
