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


# A key of no known shape (a self-hosted server's --api-key): only the deployment's redactor
# knows it, so nothing but redaction of the whole text can keep it out.
PLAIN_KEY = "vllm-Zq7Hq2Zp9Xw4Lm8Rt3Yb6Nc1"


def _leaks(error: UpstreamStatusError | UpstreamTimeout, key: str) -> list[str]:
    """Every string the error carries out that holds the key or its first 12 characters."""
    fields = [error.message, error.type, error.code, str(error), repr(error)]
    return [f for f in fields if f is not None and (key in f or key[:12] in f)]


@pytest.mark.parametrize(
    "body",
    [
        # OpenAI: rule 9 passes a 400's type through to the client as the provider worded it.
        {"error": {"message": "bad", "type": f"invalid_request_error ({PLAIN_KEY})"}},
        {"error": {"message": "bad", "type": "invalid_request_error", "code": PLAIN_KEY}},
        {"error": {"message": "bad", "type": "x", "param": PLAIN_KEY, "code": None}},
        # Anthropic's error type, Gemini's status (our type) and ErrorInfo reason (our code).
        {"type": "error", "error": {"type": f"invalid_request_error {PLAIN_KEY}", "message": "m"}},
        {"error": {"code": 400, "message": "m", "status": f"INVALID_ARGUMENT/{PLAIN_KEY}"}},
        {"error": {"code": 400, "message": "m", "details": [{"reason": f"KEY_{PLAIN_KEY}"}]}},
    ],
)
def test_every_field_of_a_400_is_redacted(body: object) -> None:
    """A key the provider echoes in any field of its error (type, code, status, reason) is gone."""
    error = classify_response(
        400, orjson.dumps(body), None, deployment="d", redact=Redactor([PLAIN_KEY]), now=0
    )
    assert error.error_class is ErrorClass.BAD_REQUEST
    assert _leaks(error, PLAIN_KEY) == []


def test_an_event_error_is_redacted_in_every_field() -> None:
    """An error object inside a 200 or a stream loses the key from its type and code too."""
    payload = {"error": {"message": f"m {PLAIN_KEY}", "type": PLAIN_KEY, "code": PLAIN_KEY}}
    error = classify_event(payload, deployment="d", redact=Redactor([PLAIN_KEY]), now=0)
    assert _leaks(error, PLAIN_KEY) == []


@pytest.mark.parametrize("at", [1000 - 25, 1000 - 12, 1000 - 5])
def test_a_plain_body_with_the_key_across_the_message_bound(at: int) -> None:
    """A text body whose key straddles the 1,000-character message bound shows no part of it."""
    body = ("x" * at + PLAIN_KEY + " and more text").encode()
    error = classify_response(400, body, None, deployment="d", redact=Redactor([PLAIN_KEY]), now=0)
    assert len(error.message) <= 1000
    assert _leaks(error, PLAIN_KEY) == []
    assert PLAIN_KEY[:4] not in error.message


def test_a_shaped_key_glued_to_text_across_the_message_bound() -> None:
    """An sk- key glued to the text before it (no shape match) is still redacted before the cut."""
    body = ("x" * 985 + KEY + " trailing").encode()
    error = classify_response(400, body, None, deployment="d", redact=Redactor([KEY]), now=0)
    assert _leaks(error, KEY) == []


def test_a_body_cut_at_the_read_bound_inside_the_key() -> None:
    """The error body is read up to 64 KiB: a key it ends inside leaves no part in the message."""
    bound = 64 * 1024
    # Blank padding collapses, so the cut key is what is left of the message.
    body = (" " * (bound - 20) + PLAIN_KEY).encode()[:bound]
    error = classify_response(400, body, None, deployment="d", redact=Redactor([PLAIN_KEY]), now=0)
    assert PLAIN_KEY[:4] not in error.message
    assert _leaks(error, PLAIN_KEY) == []


def test_long_fields_are_cut_after_redaction() -> None:
    """A type or code of any length is cut to a word's bound; the message to 1,000 characters."""
    body = {"error": {"message": "m" * 5000, "type": "t" * 5000, "code": "q" * 5000}}
    error = classify_response(
        400, orjson.dumps(body), None, deployment="d", redact=Redactor(), now=0
    )
    assert (len(error.message), len(error.type or ""), len(error.code or "")) == (1000, 200, 200)


def test_gemini_token_count_overflow_is_still_recognised() -> None:
    """Gemini's "input token count (N) exceeds the maximum" is a context overflow."""
    message = (
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    )
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    error = classify_response(
        400, orjson.dumps(body), None, deployment="d", redact=Redactor(), now=0
    )
    assert error.error_class is ErrorClass.CONTEXT_OVERFLOW
