"""Error normalisation: a provider's error status, body and headers -> a classed UpstreamError.

Every family's real error shapes are read here, so that the engine sees one vocabulary
(the failure table) whatever the provider said:

- OpenAI and clones: ``{"error": {"message", "type", "param", "code"}}``; OpenRouter puts an
  integer status in ``code``; Ollama sends ``{"error": "text"}``.
- Anthropic: ``{"type": "error", "error": {"type": "overloaded_error", "message"}, "request_id"}``.
- Gemini: ``{"error": {"code": 429, "message", "status": "RESOURCE_EXHAUSTED", "details": [...]}}``,
  sometimes wrapped in a one-element list.

Status decides first; the body refines it where one status means several things (a 429 that is an
exhausted quota, a 400 that is a context overflow or a spent balance, Gemini's 400 for a bad key).
An error event inside a stream has no status: its type, gRPC status or embedded code stand in.

Every string read from the body (message, type, code, status, reasons) is the provider's, which
may quote a key: each goes through the deployment's redactor, whole, before it is cut to its bound
and before anything else reads it (the class is decided on the redacted words), so that no field
of the error, nor anything built from it (the client's 400, a record, an alert, a span), holds
any part of a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from failover.errors import ErrorClass, UpstreamError, UpstreamStatusError, UpstreamTimeout
from failover.providers.redact import Redactor
from failover.providers.retry_after import retry_after

__all__ = [
    "ProviderError",
    "classify_event",
    "classify_response",
    "error_class",
    "parse_error",
    "redacted",
]

_MAX_MESSAGE = 1000
_MAX_FIELD = 200  # a type, a code, a status or a reason: a word, not a text
_MAX_DETAILS = 20  # reasons and quota ids kept from a Gemini error's details
_MARGIN = 1024
"""Characters past a field's bound that are redacted with it: more than any key is long, so a
key that begins inside the bound is redacted whole (and one cut at the margin, which lies past
the bound, by its tail), while a 64 KiB body costs no more than a short one."""

# Stand-in statuses for stream error events, by the provider's error type or code.
_STATUS_BY_TYPE = {
    # Anthropic
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "timeout_error": 408,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
    # OpenAI and clones
    "invalid_api_key": 401,
    "insufficient_quota": 429,
    "rate_limit_exceeded": 429,
    "requests": 429,
    "tokens": 429,
    "server_error": 500,
    "model_not_found": 404,
    "context_length_exceeded": 400,
}

# Gemini (google.rpc) statuses, with the HTTP status Google maps each to.
_STATUS_BY_GRPC = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# Context-window overflows, in each provider's real wording.
_CONTEXT_OVERFLOW = re.compile(
    "|".join(
        [
            r"context_length_exceeded",  # OpenAI, Groq: the error code
            r"maximum context length",  # OpenAI, OpenRouter, vLLM, Fireworks
            r"context window",  # "exceeds the context window of this model"
            r"prompt is too long",  # Anthropic "...: N tokens > M maximum"; Fireworks
            r"exceed context limit",  # Anthropic "input length and `max_tokens` exceed ..."
            # Gemini "The input token count (N) exceeds ..." (bounded: no backtracking over a body)
            r"input token count .{0,40}exceeds the maximum",
            r"reduce the length of the messages",  # OpenAI, Groq "Please reduce the length ..."
            r"`?max_new_tokens`? must be <=",  # Together / TGI input validation
            r"request too large for model",  # Groq: one request above the model's token limit
            r"maximum prompt length",  # xAI
            r"available context size",  # llama.cpp
            r"input is too long",  # Bedrock-hosted models behind OpenAI-compatible proxies
        ]
    ),
    re.IGNORECASE,
)

# A spent balance or a billing cap: no retry helps until someone pays.
_QUOTA_CODES = frozenset(
    {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "billing_error"}
)
_QUOTA_WORDING = re.compile(
    "|".join(
        [
            r"insufficient_quota",
            r"exceeded your current quota",  # OpenAI
            r"credit balance is too low",  # Anthropic (a 400)
            r"specified api usage limits",  # Anthropic spend limit (a 400)
            r"spend(?:ing)? limit",
            r"billing hard limit",
            r"insufficient (?:credits|balance)",  # OpenRouter, DeepSeek (402)
            r"enable billing",  # Gemini FAILED_PRECONDITION: free tier not available
        ]
    ),
    re.IGNORECASE,
)

# Bad keys some providers report with a 400 (Gemini's API_KEY_INVALID) instead of a 401.
_AUTH_WORDING = re.compile(
    r"api_key_invalid|api key not valid|invalid api key|incorrect api key|invalid x-api-key",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ProviderError:
    """What a provider's error body says, whatever its shape."""

    message: str = ""
    type: str | None = None
    code: str | None = None
    embedded_status: int | None = None
    grpc_status: str | None = None
    reasons: tuple[str, ...] = ()
    quota_ids: tuple[str, ...] = ()


def parse_error(payload: Any, text: str = "") -> ProviderError:
    """Read an error body of any family; ``text`` is the raw body, used when it is not JSON.

    The fields are the provider's words as they are, uncut: :func:`redacted` makes them fit to
    show.
    """
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if not isinstance(payload, dict):
        return ProviderError(message=" ".join(text.split()))
    error = payload.get("error", payload)
    if isinstance(error, str):  # Ollama: {"error": "model 'x' not found"}
        return ProviderError(message=error)
    if not isinstance(error, dict):
        return ProviderError(message=" ".join(text.split()))
    message = error.get("message") or error.get("detail") or payload.get("message") or ""
    code = error.get("code")
    embedded = code if isinstance(code, int) and not isinstance(code, bool) else None
    reasons: list[str] = []
    quota_ids: list[str] = []
    for detail in error.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if isinstance(reason := detail.get("reason"), str):
            reasons.append(reason)
        for violation in detail.get("violations") or ():
            if isinstance(violation, dict):
                quota_ids.extend(
                    str(violation[key]) for key in ("quotaId", "quotaMetric") if key in violation
                )
    grpc = error.get("status")
    return ProviderError(
        message=message if isinstance(message, str) else str(message),
        type=_str_or_none(error.get("type")),
        code=None if code is None or embedded is not None else str(code),
        embedded_status=embedded,
        grpc_status=grpc if isinstance(grpc, str) else None,
        reasons=tuple(reasons),
        quota_ids=tuple(quota_ids),
    )


def redacted(info: ProviderError, redact: Redactor) -> ProviderError:
    """``info`` with each of its strings redacted whole, then cut to its bound.

    >>> redacted(ProviderError(message="bad key sk-live-0123456789", type="sk-live-0123456789"),
    ...          Redactor())
    ProviderError(message='bad key [REDACTED]', type='[REDACTED]', code=None, \
embedded_status=None, grpc_status=None, reasons=(), quota_ids=())
    """

    def clean(text: str, limit: int = _MAX_FIELD) -> str:
        return redact(text[: limit + _MARGIN])[:limit]

    def maybe(text: str | None) -> str | None:
        return None if text is None else clean(text)

    return replace(
        info,
        message=clean(info.message, _MAX_MESSAGE),
        type=maybe(info.type),
        code=maybe(info.code),
        grpc_status=maybe(info.grpc_status),
        reasons=tuple(clean(reason) for reason in info.reasons[:_MAX_DETAILS]),
        quota_ids=tuple(clean(quota) for quota in info.quota_ids[:_MAX_DETAILS]),
    )


def error_class(status: int | None, info: ProviderError) -> ErrorClass:
    """The class for an HTTP status (``None`` inside a stream) and what the body says."""
    if status is None:
        status = (
            info.embedded_status
            or _STATUS_BY_GRPC.get(info.grpc_status or "")
            # The code is the more specific: OpenAI words a missing model as
            # {"type": "invalid_request_error", "code": "model_not_found"}.
            or _STATUS_BY_TYPE.get(info.code or "")
            or _STATUS_BY_TYPE.get(info.type or "")
            or 500  # an unexplained failure mid-stream is the server's
        )
    if status in (408, 409):
        return ErrorClass.TIMEOUT
    if status == 402:
        return ErrorClass.QUOTA
    if status == 429:
        return ErrorClass.QUOTA if _is_quota(info) else ErrorClass.RATE_LIMIT
    if status in (401, 403):
        return ErrorClass.AUTH
    if status in (404, 410) or 300 <= status < 400:
        # A redirect means the base URL is wrong (we never follow one with a key attached).
        return ErrorClass.NOT_FOUND
    if 400 <= status < 500:
        text = _text(info)
        if _CONTEXT_OVERFLOW.search(text):
            return ErrorClass.CONTEXT_OVERFLOW
        if _is_quota(info):
            return ErrorClass.QUOTA
        if _AUTH_WORDING.search(text):
            return ErrorClass.AUTH
        if info.grpc_status == "FAILED_PRECONDITION":
            # Gemini: "User location is not supported": this deployment cannot serve from
            # here, whatever the request; another target may.
            return ErrorClass.AUTH
        return ErrorClass.BAD_REQUEST
    return ErrorClass.SERVER_ERROR


def classify_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    deployment: str,
    redact: Redactor,
    now: float,
) -> UpstreamError:
    """The error for a non-2xx answer: class, provider message (redacted), Retry-After."""
    payload = _json_or_none(body)
    info = redacted(parse_error(payload, body.decode("utf-8", "replace")), redact)
    cls = error_class(status, info)
    message = info.message or f"HTTP {status}"
    wait = retry_after(headers, payload, now=now, rate_limited=cls is ErrorClass.RATE_LIMIT)
    return _build(cls, message, info, deployment, status=status, retry_after=wait)


def classify_event(payload: Any, *, deployment: str, redact: Redactor, now: float) -> UpstreamError:
    """The error for an error object inside a stream (or inside a 200 body)."""
    info = redacted(parse_error(payload), redact)
    cls = error_class(None, info)
    wait = retry_after(None, payload, now=now)
    message = info.message or "error event in stream"
    return _build(cls, message, info, deployment, status=None, retry_after=wait)


def _build(
    cls: ErrorClass,
    message: str,
    info: ProviderError,
    deployment: str,
    *,
    status: int | None,
    retry_after: float | None,
) -> UpstreamError:
    """The error, from fields :func:`redacted` already made fit to show."""
    kind = UpstreamTimeout if cls is ErrorClass.TIMEOUT else UpstreamStatusError
    reason = info.reasons[0] if info.reasons else None
    return kind(
        message,
        deployment=deployment,
        status=status,
        retry_after=retry_after,
        error_class=cls,
        code=info.code or reason,
        type=info.type or info.grpc_status,
    )


def _is_quota(info: ProviderError) -> bool:
    if info.grpc_status == "RESOURCE_EXHAUSTED":
        # Gemini words every 429 as "exceeded your current quota"; only a daily quota, or a
        # quota of zero (no free tier for this model), is one that waiting a minute will not fix.
        return any("perday" in q.lower().replace("_", "") for q in info.quota_ids) or (
            "limit: 0" in info.message
        )
    if info.code in _QUOTA_CODES or info.type in _QUOTA_CODES:
        return True
    return _QUOTA_WORDING.search(_text(info)) is not None


def _text(info: ProviderError) -> str:
    return " ".join(
        part for part in (info.message, info.type, info.code, *info.reasons) if part is not None
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
