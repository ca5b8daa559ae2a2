"""Error normalisation over every family's real error shapes, and stream error events."""

from __future__ import annotations

import time

import orjson
import pytest
from multidict import CIMultiDict

from failover.errors import ErrorClass, UpstreamStatusError, UpstreamTimeout
from failover.providers.classify import classify_event, classify_response, parse_error
from failover.providers.redact import Redactor
from tests.providers.shapes import (
    ANTHROPIC_CASES,
    GEMINI_CASES,
    GOOGLE_KEY,
    KEY,
    OPENAI_CASES,
    Case,
)

ALL_CASES = [
    *(pytest.param(c, id=f"openai-{c.id}") for c in OPENAI_CASES),
    *(pytest.param(c, id=f"anthropic-{c.id}") for c in ANTHROPIC_CASES),
    *(pytest.param(c, id=f"gemini-{c.id}") for c in GEMINI_CASES),
]


def body_of(case: Case) -> bytes:
    return case.body if isinstance(case.body, bytes) else orjson.dumps(case.body)


@pytest.mark.parametrize("case", ALL_CASES)
def test_real_error_shapes_are_classed(case: Case) -> None:
    """Each real error body maps to SPEC.md's class, with status and Retry-After."""
    error = classify_response(
        case.status,
        body_of(case),
        CIMultiDict(case.headers_now()),
        deployment="dep",
        redact=Redactor([KEY]),
        now=time.time(),
    )
    assert error.error_class is case.expected
    assert error.status == case.status
    assert error.deployment == "dep"
    if case.retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(case.retry_after, abs=2.0)
    assert isinstance(
        error, UpstreamTimeout if case.expected is ErrorClass.TIMEOUT else UpstreamStatusError
    )
    for secret in (KEY, GOOGLE_KEY):
        assert secret not in str(error)
        assert secret not in repr(error)


def test_provider_message_type_and_code_are_kept() -> None:
    """The provider's own message, type and code travel on the error."""
    case = next(c for c in OPENAI_CASES if c.id == "400-openai-context")
    error = classify_response(400, body_of(case), None, deployment="d", redact=Redactor(), now=0)
    assert error.message.startswith("This model's maximum context length is 128000 tokens")
    assert (error.type, error.code) == ("invalid_request_error", "context_length_exceeded")


def test_gemini_type_is_the_grpc_status_and_code_the_reason() -> None:
    """Gemini errors carry their gRPC status as type and ErrorInfo reason as code."""
    case = next(c for c in GEMINI_CASES if c.id == "400-api-key-invalid")
    error = classify_response(400, body_of(case), None, deployment="d", redact=Redactor(), now=0)
    assert (error.type, error.code) == ("INVALID_ARGUMENT", "API_KEY_INVALID")


def test_echoed_key_is_redacted() -> None:
    """OpenAI's 'Incorrect API key provided: sk-…' never carries the key on."""
    case = next(c for c in OPENAI_CASES if c.id == "401-invalid-key-echoed")
    error = classify_response(
        401, body_of(case), None, deployment="d", redact=Redactor([KEY]), now=0
    )
    assert KEY not in error.message
    assert "Incorrect API key provided: [REDACTED]." in error.message


def test_non_json_body_gives_status_and_snippet() -> None:
    """An HTML error page still yields a class and a short message."""
    error = classify_response(
        502, b"<html>Bad   Gateway</html>", None, deployment="d", redact=Redactor(), now=0
    )
    assert error.error_class is ErrorClass.SERVER_ERROR
    assert error.message == "<html>Bad Gateway</html>"


def test_redirect_is_not_found() -> None:
    """A redirect means a wrong base URL: the deployment is not there."""
    error = classify_response(301, b"", None, deployment="d", redact=Redactor(), now=0)
    assert error.error_class is ErrorClass.NOT_FOUND
    assert error.message == "HTTP 301"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ErrorClass.SERVER_ERROR,
        ),
        (
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            ErrorClass.RATE_LIMIT,
        ),
        (
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 9 tokens > 8 maximum",
                },
            },
            ErrorClass.CONTEXT_OVERFLOW,
        ),
        (
            {"type": "error", "error": {"type": "api_error", "message": "Internal"}},
            ErrorClass.SERVER_ERROR,
        ),
        (
            {"error": {"message": "The server had an error", "type": "server_error", "code": None}},
            ErrorClass.SERVER_ERROR,
        ),
        (
            {
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
            ErrorClass.QUOTA,
        ),
        ({"error": {"code": 502, "message": "Provider returned error"}}, ErrorClass.SERVER_ERROR),
        ({"error": {"code": 429, "message": "Rate limit exceeded"}}, ErrorClass.RATE_LIMIT),
        (
            {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}},
            ErrorClass.SERVER_ERROR,
        ),
        ({"error": {"message": "something odd"}}, ErrorClass.SERVER_ERROR),
    ],
)
def test_stream_error_events(payload: object, expected: ErrorClass) -> None:
    """An error inside a stream is classed by its type, code or gRPC status."""
    error = classify_event(payload, deployment="d", redact=Redactor(), now=0)
    assert error.error_class is expected
    assert error.status is None


def test_parse_error_shapes() -> None:
    """Each family's envelope is read: OpenAI, Anthropic, Gemini list form, Ollama string."""
    assert parse_error({"error": {"message": "m", "type": "t", "code": "c"}}).code == "c"
    assert parse_error({"type": "error", "error": {"type": "t", "message": "m"}}).type == "t"
    gemini = parse_error([{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "m"}}])
    assert (gemini.embedded_status, gemini.grpc_status) == (400, "INVALID_ARGUMENT")
    assert parse_error({"error": "model not found"}).message == "model not found"
    assert parse_error(None, "plain   text").message == "plain text"
