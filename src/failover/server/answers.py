"""Answers in OpenAI's shapes: JSON bodies, error objects, and the headers they carry.

Every error in this shape is ``{"error": {"message", "type", "code", "param"}}`` with the status
of docs/semantics.md. Answers that do not depend on the request are built once, as bytes, by
their callers. :func:`openai_error` renders a :class:`~failover.server.status.Problem` (what a
failed request is answered with) in this shape: the chat surface's errors and the gateway's own
(401, 404, 413, 429) use it.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from failover.server.status import SHOULD_NOT_RETRY, Header, Problem, retry_after_headers

__all__ = [
    "CONNECTION_CLOSE",
    "CONTENT_JSON",
    "SHOULD_NOT_RETRY",
    "ErrorAnswer",
    "Header",
    "error",
    "error_body",
    "openai_error",
    "retry_after_headers",
    "type_for",
]

CONTENT_JSON: Header = (b"content-type", b"application/json")
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


def openai_error(problem: Problem) -> ErrorAnswer:
    """``problem`` as an OpenAI-shaped error answer."""
    return error(
        problem.status,
        problem.message,
        problem.code,
        param=problem.param,
        type=problem.type,
        headers=problem.headers,
    )
