"""What a failed request is answered with over HTTP, in no surface's shape yet.

:func:`problem_for` turns what a request raised into a :class:`Problem`: the status for its
:class:`~failover.errors.FailureKind` (docs/semantics.md, "How a failed request is answered"),
the message, the code and the headers. Each surface's codec renders it in its own shape (OpenAI's
``{"error": {...}}``, Anthropic's ``{"type": "error", ...}``). A provider's 400 (rule 9) keeps the
provider's words, status and type; the other messages name the route and the class of the
failure, never an upstream URL or key. Answers given after failover tried carry
``x-should-retry: false``, so the official SDKs do not multiply the retries.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from failover.errors import (
    AllTargetsFailed,
    ErrorClass,
    FailureKind,
    NoTargetAvailable,
    UpstreamError,
    failure_of,
)

__all__ = [
    "SHOULD_NOT_RETRY",
    "FailureStatus",
    "Header",
    "Problem",
    "problem_for",
    "retry_after_headers",
    "status_of",
    "stream_problem",
]

Header = tuple[bytes, bytes]

SHOULD_NOT_RETRY: Header = (b"x-should-retry", b"false")

STATUS: dict[FailureKind, int] = {
    FailureKind.DEADLINE: 504,
    FailureKind.TIMEOUT: 504,
    FailureKind.UNAVAILABLE: 503,
    FailureKind.CONTEXT_OVERFLOW: 400,
    FailureKind.BAD_REQUEST: 400,
    FailureKind.UPSTREAM: 502,
    FailureKind.CLIENT_LIMITED: 429,
    FailureKind.INTERNAL: 500,
}
"""The HTTP status of each kind of failure (a bad request: the provider's own 4xx, else 400)."""


class FailureStatus(NamedTuple):
    """A failed request's HTTP status, ``error.code`` and Retry-After seconds (or None)."""

    status: int
    code: str
    retry_after: float | None


def status_of(exc: BaseException) -> FailureStatus:
    """The HTTP status, code and Retry-After of what a request raised.

    >>> status_of(NoTargetAvailable("intent", retry_after=12.0))
    FailureStatus(status=503, code='circuit_open', retry_after=12.0)
    """
    failure = failure_of(exc)
    status = STATUS[failure.kind]
    if (
        failure.kind is FailureKind.BAD_REQUEST
        and isinstance(exc, UpstreamError)
        and exc.status is not None
        and 400 <= exc.status < 500
    ):
        status = exc.status  # the provider's own 400, 413 or 422
    return FailureStatus(status, failure.code, failure.retry_after)


class Problem(NamedTuple):
    """An error to answer: status, message, code, the field at fault, the provider's own
    ``type`` (a bad request's, passed on), and headers (Retry-After, x-should-retry, ids)."""

    status: int
    message: str
    code: str | None
    param: str | None = None
    type: str | None = None
    headers: tuple[Header, ...] = ()


def problem_for(exc: BaseException, *, extra: tuple[Header, ...] = ()) -> Problem:
    """The answer to what a request raised after failover tried; ``extra`` headers are added.

    >>> from failover.errors import UpstreamTimeout
    >>> problem_for(AllTargetsFailed("intent", [UpstreamTimeout("slow")]))[:3]
    (504, "route 'intent': every attempt failed (1); the last failure was timeout", 'timeout')
    """
    status, code, retry_after = status_of(exc)
    headers = (SHOULD_NOT_RETRY, *retry_after_headers(retry_after), *extra)
    if isinstance(exc, UpstreamError):
        # The provider's own words (adapters redact keys from them), and its type when it gave one.
        kept = exc.type if status < 500 and exc.type else None
        return Problem(status, exc.message, code, type=kept, headers=headers)
    return Problem(status, _describe(exc, code), code, headers=headers)


def retry_after_headers(seconds: float | None) -> tuple[Header, ...]:
    """``retry-after`` in whole seconds (rounded up, at least 1) and ``retry-after-ms``.

    >>> retry_after_headers(0.25)
    ((b'retry-after', b'1'), (b'retry-after-ms', b'250'))
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ()
    whole = max(1, math.ceil(seconds))
    return ((b"retry-after", b"%d" % whole), (b"retry-after-ms", b"%d" % math.ceil(seconds * 1000)))


def _describe(exc: BaseException, code: str) -> str:
    if isinstance(exc, NoTargetAvailable):
        return f"route {exc.route!r}: no deployment is available (circuits open or cooling down)"
    if isinstance(exc, AllTargetsFailed):
        last = exc.errors[-1] if exc.errors else None
        if (
            isinstance(last, UpstreamError)
            and last.error_class is ErrorClass.CONTEXT_OVERFLOW
            and code == "context_length_exceeded"
        ):
            return last.message  # the client must shorten its request: tell it by how much
        where = ""
        if isinstance(last, UpstreamError) and last.deployment:
            where = f" at deployment {last.deployment!r}"
        if exc.deadline_passed:
            return f"route {exc.route!r}: the deadline passed before any attempt succeeded"
        return (
            f"route {exc.route!r}: every attempt failed ({len(exc.errors)}); "
            f"the last failure was {code}{where}"
        )
    return "internal error"


def stream_problem(exc: BaseException) -> Problem:
    """The error that ends a stream which failed after its commit (rule 8)."""
    problem = problem_for(exc)
    if problem.status == 500:
        return problem
    detail = getattr(exc, "message", "") or problem.code
    return problem._replace(message=f"the stream failed after it started: {detail}")
