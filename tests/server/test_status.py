"""status_of: the HTTP status, code and Retry-After of every error a request can raise."""

from __future__ import annotations

from failover.errors import (
    AllTargetsFailed,
    ClientRateLimited,
    DeadlineExceeded,
    ErrorClass,
    NoTargetAvailable,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from failover.server.status import status_of


def err(
    error_class: ErrorClass,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    code: str | None = None,
) -> UpstreamError:
    return UpstreamStatusError(
        "x", error_class=error_class, status=status, retry_after=retry_after, code=code
    )


def test_deadline_passed_is_504() -> None:
    """The deadline cut the request: 504 deadline_exceeded."""
    failed = AllTargetsFailed(
        "r", [err(ErrorClass.SERVER_ERROR), DeadlineExceeded("r", 5.5)], deadline_passed=True
    )
    assert status_of(failed) == (504, "deadline_exceeded", None)


def test_every_failure_a_timeout_is_504() -> None:
    """Only timeouts: 504 timeout."""
    failed = AllTargetsFailed("r", [UpstreamTimeout("slow"), err(ErrorClass.TIMEOUT, status=408)])
    assert status_of(failed) == (504, "timeout", None)


def test_rate_limits_quotas_and_open_circuits_are_503_with_the_soonest_retry_after() -> None:
    """Only "come back later" failures: 503 with the soonest Retry-After."""
    failed = AllTargetsFailed(
        "r",
        [
            err(ErrorClass.RATE_LIMIT, retry_after=30.0),
            err(ErrorClass.QUOTA),
            err(ErrorClass.RATE_LIMIT, retry_after=4.0),
        ],
    )
    assert status_of(failed) == (503, "rate_limit", 4.0)
    assert status_of(NoTargetAvailable("r", 9.0)) == (503, "circuit_open", 9.0)


def test_every_target_overflowed_is_400_context_length_exceeded() -> None:
    """Only context overflows: the client's prompt is too long everywhere."""
    failed = AllTargetsFailed("r", [err(ErrorClass.CONTEXT_OVERFLOW, status=400)] * 2)
    assert status_of(failed) == (400, "context_length_exceeded", None)


def test_anything_else_is_502_with_the_last_class() -> None:
    """A mix: 502 with the class of the failure that came last."""
    failed = AllTargetsFailed("r", [err(ErrorClass.RATE_LIMIT), err(ErrorClass.AUTH, status=401)])
    assert status_of(failed) == (502, "auth", None)
    assert status_of(AllTargetsFailed("r", [])) == (502, "upstream_error", None)


def test_a_bad_request_is_the_providers_own_status_and_code() -> None:
    """Rule 9: the 400 (or 422) as the provider worded it."""
    assert status_of(err(ErrorClass.BAD_REQUEST, status=422, code="invalid_value")) == (
        422,
        "invalid_value",
        None,
    )
    assert status_of(err(ErrorClass.BAD_REQUEST)) == (400, "bad_request", None)


def test_rejections_and_unknown_errors() -> None:
    """Inbound limits are 429; a bare deadline 504; anything unknown 500."""
    assert status_of(ClientRateLimited(3.0)) == (429, "rate_limit_exceeded", 3.0)
    assert status_of(DeadlineExceeded("r", 1.0)) == (504, "deadline_exceeded", None)
    assert status_of(KeyError("x")) == (500, "internal_error", None)
