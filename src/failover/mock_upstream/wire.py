"""OpenAI's wire format as bytes, precomputed: completions, stream events, errors, garbage.

The mock is the upstream of every benchmark, so an answer is assembled by joining constant byte
strings around the few per-request values (id, time, model, usage) instead of serialising a dict.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

__all__ = [
    "DONE",
    "ERROR_CODES",
    "Content",
    "ErrorShape",
    "completion",
    "count_words",
    "error_body",
    "error_event",
    "error_shape",
    "malformed_body",
    "malformed_event",
    "models_body",
    "retry_after_headers",
    "stream_events",
]

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"
DONE = b"data: [DONE]\n\n"

ERROR_CODES: Mapping[str, tuple[int, str, str]] = {
    "rate_limit_exceeded": (429, "requests", "Rate limit reached for requests."),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "context_length_exceeded": (
        400,
        "invalid_request_error",
        "This model's maximum context length is 8192 tokens. However, your messages resulted "
        "in 9000 tokens. Please reduce the length of the messages.",
    ),
    "invalid_api_key": (401, "invalid_request_error", "Incorrect API key provided."),
    "model_not_found": (
        404,
        "invalid_request_error",
        "The model does not exist or you do not have access to it.",
    ),
    "invalid_value": (400, "invalid_request_error", "Invalid value for a request parameter."),
    "server_error": (
        500,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (529, "overloaded_error", "The server is overloaded."),
}
"""Known ``error.code`` values: their status, ``error.type`` and message, as OpenAI words them."""

# The code a bare status gets, so that `x-mock-error-status: 401` still looks like OpenAI.
_STATUS_CODES: Mapping[int, tuple[str, str, str]] = {
    400: ("invalid_value", "invalid_request_error", "Invalid value for a request parameter."),
    401: ("invalid_api_key", "invalid_request_error", "Incorrect API key provided."),
    402: ("billing_hard_limit_reached", "insufficient_quota", "Billing hard limit reached."),
    403: ("permission_denied", "permission_error", "You are not allowed to use this model."),
    404: ("model_not_found", *ERROR_CODES["model_not_found"][1:]),
    408: ("timeout", "timeout_error", "Request timed out."),
    409: ("conflict", "server_error", "Conflict, please retry."),
    413: ("request_too_large", "invalid_request_error", "Request too large."),
    422: ("unprocessable_entity", "invalid_request_error", "Unprocessable request."),
    429: ("rate_limit_exceeded", *ERROR_CODES["rate_limit_exceeded"][1:]),
    500: ("server_error", *ERROR_CODES["server_error"][1:]),
    502: ("bad_gateway", "server_error", "Bad gateway."),
    503: ("service_unavailable", "server_error", "The server is overloaded or not ready yet."),
    504: ("gateway_timeout", "server_error", "Gateway timeout."),
    529: ("overloaded", *ERROR_CODES["overloaded"][1:]),
}


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """An error answer's status and OpenAI error object."""

    status: int
    code: str
    type: str
    message: str


def error_shape(
    status: int | None, code: str | None, type_: str | None = None, *, name: str = "mock"
) -> ErrorShape:
    """Fill in what is missing: a code gives its status and type, a status its usual code."""
    if code is not None and code in ERROR_CODES:
        known_status, known_type, message = ERROR_CODES[code]
    else:
        fallback = _STATUS_CODES.get(status or 500)
        if fallback is None:
            kind = "server_error" if (status or 500) >= 500 else "invalid_request_error"
            fallback = (kind, kind, f"HTTP {status}")
        known_status = status or 500
        fallback_code, known_type, message = fallback
        code = code or fallback_code
    return ErrorShape(
        status=status or known_status,
        code=code,
        type=type_ or known_type,
        message=f"{message} (mock upstream {name})",
    )


def error_body(shape: ErrorShape, form: str) -> tuple[bytes, str]:
    """An error's body and content type in one of the forms ``openai``, ``text``, ``html``,
    ``empty``."""
    if form == "text":
        return f"{shape.status} {shape.message}\n".encode(), "text/plain; charset=utf-8"
    if form == "html":
        page = f"<html><body><h1>{shape.status}</h1><p>{shape.message}</p></body></html>\n"
        return page.encode(), "text/html; charset=utf-8"
    if form == "empty":
        return b"", JSON
    error = {"message": shape.message, "type": shape.type, "param": None, "code": shape.code}
    return orjson.dumps({"error": error}), JSON


def error_event(shape: ErrorShape) -> bytes:
    """An error inside an SSE stream, as OpenAI sends it (then the stream ends without
    [DONE])."""
    error = {"message": shape.message, "type": shape.type, "param": None, "code": shape.code}
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"


def retry_after_headers(seconds: float, form: str, now: float) -> dict[str, str]:
    """Retry-After in the form asked: ``seconds``, ``date`` (HTTP date, whole seconds up),
    ``ms`` (``retry-after-ms``) or ``all`` (both headers, as OpenAI sends)."""
    if form == "date":
        return {"retry-after": email.utils.formatdate(now + math.ceil(seconds), usegmt=True)}
    if form == "ms":
        return {"retry-after-ms": str(round(seconds * 1000))}
    headers = {"retry-after": f"{seconds:g}"}
    if form == "all":
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


def count_words(messages: object) -> int:
    """The plausible prompt token count of a ``messages`` list: its words (text parts too)."""
    if not isinstance(messages, list):
        return 0
    words = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    words += len(text.split())
    return words


@dataclass(frozen=True, slots=True)
class Content:
    """An answer's text, ready to send: as a JSON string and as stream deltas."""

    text_json: bytes
    deltas: tuple[bytes, ...]
    tokens: int

    @classmethod
    def of(cls, text: str) -> Content:
        """The answer ``text``, streamed one word per chunk (with its leading space)."""
        words = text.split(" ")
        pieces = [words[0], *(" " + word for word in words[1:])]
        return cls(orjson.dumps(text), _deltas(pieces), len(text.split()))

    @classmethod
    def giant(cls, size: int) -> Content:
        """About ``size`` bytes of words, streamed in 4 KiB chunks."""
        text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
        pieces = [text[i : i + 4096] for i in range(0, len(text), 4096)]
        return cls(orjson.dumps(text), _deltas(pieces), len(text.split()))


def _deltas(pieces: list[str]) -> tuple[bytes, ...]:
    return tuple(orjson.dumps({"content": piece}) for piece in pieces)


def _usage(prompt: int, completion_tokens: int) -> bytes:
    return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
        prompt,
        completion_tokens,
        prompt + completion_tokens,
    )


def completion(ident: bytes, created: int, model: bytes, prompt: int, content: Content) -> bytes:
    """A ``chat.completion`` body; ``model`` is already JSON (a quoted string)."""
    return b"".join(
        (
            b'{"id":"',
            ident,
            b'","object":"chat.completion","created":%d,"model":' % created,
            model,
            b',"choices":[{"index":0,"message":{"role":"assistant","content":',
            content.text_json,
            b',"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":',
            _usage(prompt, content.tokens),
            b',"system_fingerprint":null}',
        )
    )


_ROLE_DELTA = b'{"role":"assistant","content":"","refusal":null}'


def stream_events(
    ident: bytes, created: int, model: bytes, prompt: int, content: Content, include_usage: bool
) -> list[bytes]:
    """The ``data:`` events of a streamed answer, [DONE] excluded: the role chunk, one chunk
    per delta, the finish chunk, and the usage chunk when ``include_usage``."""
    head = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
        ident,
        created,
        model,
    )
    head += b'"system_fingerprint":null,"choices":[{"index":0,"delta":'
    # With include_usage OpenAI sends "usage":null on every chunk and the figures on a last
    # chunk whose choices are empty.
    tail = b',"logprobs":null,"finish_reason":null}]' + (
        b',"usage":null}\n\n' if include_usage else b"}\n\n"
    )
    events = [head + _ROLE_DELTA + tail]
    events.extend(head + delta + tail for delta in content.deltas)
    finish = b',"logprobs":null,"finish_reason":"stop"}]'
    events.append(head + b"{}" + finish + (b',"usage":null}\n\n' if include_usage else b"}\n\n"))
    if include_usage:
        usage_head = head[: -len(b'{"index":0,"delta":')]
        events.append(usage_head + b'],"usage":' + _usage(prompt, content.tokens) + b"}\n\n")
    return events


def malformed_body(mode: str, ident: bytes, created: int, model: bytes) -> tuple[bytes, str]:
    """A 200 body that is not a valid completion: ``json`` (cut mid-object), ``no-choices``,
    ``empty-choices`` or ``html`` (a proxy's page)."""
    if mode == "html":
        return b"<html><body><h1>Welcome to nginx!</h1></body></html>\n", "text/html"
    head = b'{"id":"%s","object":"chat.completion","created":%d,"model":%s' % (
        ident,
        created,
        model,
    )
    if mode == "json":
        return head + b',"choices":[{"index":0,"message":{"role":"assi', JSON
    if mode == "empty-choices":
        return head + b',"choices":[]}', JSON
    return head + b"}", JSON


def malformed_event(mode: str, ident: bytes, created: int, model: bytes) -> bytes:
    """The streamed counterpart of :func:`malformed_body` but ``html``: one bad ``data:``
    event (the server sends [DONE] after it, so only the event itself is wrong)."""
    body, _ = malformed_body(mode, ident, created, model)
    return b"data: " + body.replace(b'"chat.completion"', b'"chat.completion.chunk"') + b"\n\n"


def models_body(models: list[str], owner: str) -> bytes:
    """The ``GET /v1/models`` list."""
    data = [{"id": model, "object": "model", "created": 0, "owned_by": owner} for model in models]
    return orjson.dumps({"object": "list", "data": data})
