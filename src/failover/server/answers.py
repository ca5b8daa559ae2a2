"""Answers in OpenAI's shapes: JSON bodies, error objects, and the headers they carry.

Every error the gateway gives is ``{"error": {"message", "type", "code", "param"}}`` with the
status of SPEC's HTTP API. Answers that do not depend on the request are built once, here, as
bytes. :func:`engine_error` turns what the engine raised into its answer through
:func:`~failover.engine.failure_status` (the mapping the tests of the engine share); those
answers come after failover already tried, so they carry ``x-should-retry: false`` and the
official SDKs do not multiply the retries.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import orjson

from failover.engine.failure import failure_status
from failover.errors import (
    AllTargetsFailed,
    ErrorClass,
    NoTargetAvailable,
    UpstreamError,
)

__all__ = [
    "CONNECTION_CLOSE",
    "CONTENT_JSON",
    "SHOULD_NOT_RETRY",
    "ErrorAnswer",
    "engine_error",
    "error",
    "error_body",
    "retry_after_headers",
    "type_for",
]

Header = tuple[bytes, bytes]

CONTENT_JSON: Header = (b"content-type", b"application/json")
SHOULD_NOT_RETRY: Header = (b"x-should-retry", b"false")
CONNECTION_CLOSE: Header = (b"connection", b"close")

# OpenAI's error ``type`` for each status we answer.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    414: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class ErrorAnswer(NamedTuple):
    """A complete error answer: status, headers (content type and length included), body."""

    status: int
    headers: list[Header]
    body: bytes


def type_for(status: int) -> str:
    """OpenAI's error ``type`` for an answer with ``status``."""
    return _TYPES.get(status, "server_error")


def error_body(message: str, type: str, code: str | None, param: str | None = None) -> bytes:
    """The JSON of an OpenAI error object.

    >>> error_body("no such model", "not_found_error", "model_not_found")[:41]
    b'{"error":{"message":"no such model","type'
    """
    return orjson.dumps({"error": {"message": message, "type": type, "code": code, "param": param}})


def error(
    status: int,
    message: str,
    code: str | None,
    *,
    param: str | None = None,
    type: str | None = None,
    headers: tuple[Header, ...] = (),
) -> ErrorAnswer:
    """An error answer with ``status``; ``type`` defaults to OpenAI's for that status."""
    body = error_body(message, type or type_for(status), code, param)
    return ErrorAnswer(
        status,
        [CONTENT_JSON, (b"content-length", b"%d" % len(body)), *headers],
        body,
    )


def retry_after_headers(seconds: float | None) -> tuple[Header, ...]:
    """``retry-after`` in whole seconds (rounded up, at least 1) and ``retry-after-ms``.

    >>> retry_after_headers(0.25)
    ((b'retry-after', b'1'), (b'retry-after-ms', b'250'))
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ()
    whole = max(1, math.ceil(seconds))
    return ((b"retry-after", b"%d" % whole), (b"retry-after-ms", b"%d" % math.ceil(seconds * 1000)))


def engine_error(exc: BaseException, *, extra: tuple[Header, ...] = ()) -> ErrorAnswer:
    """The answer to an error the engine raised (after failover tried), per SPEC's HTTP API.

    A provider's 400 (rule 9) is answered as the provider worded it; the other answers name the
    route and the class of the failure, never an upstream URL or key.
    """
    status, code, retry_after = failure_status(exc)
    headers = (SHOULD_NOT_RETRY, *retry_after_headers(retry_after), *extra)
    if isinstance(exc, UpstreamError):
        # The provider's own words (adapters redact keys from them), and its type when it gave one.
        type = exc.type if status < 500 and exc.type else None
        return error(status, exc.message, code, type=type, headers=headers)
    return error(status, _describe(exc, code), code, headers=headers)


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
        where = f" at deployment {last.deployment!r}" if isinstance(last, UpstreamError) else ""
        if exc.deadline_passed:
            return f"route {exc.route!r}: the deadline passed before any attempt succeeded"
        return (
            f"route {exc.route!r}: every attempt failed ({len(exc.errors)}); "
            f"the last failure was {code}{where}"
        )
    return "internal error"
