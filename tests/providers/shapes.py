"""Real error shapes of each provider family, one per failure class of SPEC.md's table.

Bodies are copied from the providers' documentation and from error reports in public issue
trackers (OpenAI and Groq via their SDKs' exceptions, Anthropic's API errors page and Claude
Code reports, Gemini's troubleshooting page and gemini-cli reports). Retry-After appears in
each of its forms. The API key in them is the one the tests configure, echoed back as OpenAI
and Google do, to prove it never reaches a message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from failover.errors import ErrorClass

KEY = "sk-test-0123456789abcdef"
GOOGLE_KEY = "AIzaSyD-test-0123456789abcdefghijklmno"


@dataclass(frozen=True)
class Case:
    """One upstream error answer and what failover must make of it."""

    id: str
    status: int
    body: Any  # a JSON payload, or bytes sent verbatim
    expected: ErrorClass
    retry_after: float | None = None
    headers: dict[str, str | Later] = field(default_factory=dict)
    content_type: str = "application/json"

    def headers_now(self) -> dict[str, str]:
        """The headers, with times relative to now resolved at the moment of sending."""
        return {name: str(value) for name, value in self.headers.items()}


@dataclass(frozen=True)
class Later:
    """A header time ``seconds`` from whenever it is sent: an HTTP date or RFC 3339."""

    seconds: float
    rfc3339: bool = False

    def __str__(self) -> str:
        when = time.time() + self.seconds
        if self.rfc3339:
            return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
        return formatdate(when, usegmt=True)


def _in(seconds: float) -> Later:
    return Later(seconds)


def _rfc3339_in(seconds: float) -> Later:
    return Later(seconds, rfc3339=True)


def _openai(message: str, type_: str | None, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


OPENAI_CASES = [
    Case("408-timeout", 408, _openai("Request timed out.", "timeout", None), ErrorClass.TIMEOUT),
    Case(
        "409-conflict",
        409,
        _openai("Conflict, please retry.", "invalid_request_error", None),
        ErrorClass.TIMEOUT,
    ),
    Case(
        "429-rpm-retry-after-ms",
        429,
        _openai(
            "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min "
            "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "requests",
            "rate_limit_exceeded",
        ),
        ErrorClass.RATE_LIMIT,
        retry_after=20.0,
        headers={"retry-after-ms": "20000", "retry-after": "21"},
    ),
    Case(
        "429-retry-after-seconds",
        429,
        _openai("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        ErrorClass.RATE_LIMIT,
        retry_after=7.0,
        headers={"retry-after": "7"},
    ),
    Case(
        "429-retry-after-http-date",
        429,
        _openai("Rate limit reached for tokens", "tokens", "rate_limit_exceeded"),
        ErrorClass.RATE_LIMIT,
        retry_after=30.0,
        headers={"retry-after": _in(30)},
    ),
    Case(
        "429-groq-reset-headers",
        429,
        _openai(
            "Rate limit reached for model `llama3-8b-8192` in organization `org_1` on tokens "
            "per minute (TPM): Limit 6000, Used 5500, Requested 900. Please try again in 7.66s.",
            "tokens",
            "rate_limit_exceeded",
        ),
        ErrorClass.RATE_LIMIT,
        retry_after=7.66,
        headers={
            "x-ratelimit-remaining-requests": "14370",
            "x-ratelimit-reset-requests": "2m59.56s",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "7.66s",
        },
    ),
    Case(
        "429-insufficient-quota",
        429,
        _openai(
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        ErrorClass.QUOTA,
    ),
    Case(
        "400-billing-hard-limit",
        400,
        _openai(
            "Billing hard limit has been reached",
            "invalid_request_error",
            "billing_hard_limit_reached",
        ),
        ErrorClass.QUOTA,
    ),
    Case(
        "402-openrouter-credits",
        402,
        {
            "error": {
                "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
                "code": 402,
            }
        },
        ErrorClass.QUOTA,
    ),
    Case(
        "401-invalid-key-echoed",
        401,
        _openai(
            f"Incorrect API key provided: {KEY}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        ErrorClass.AUTH,
    ),
    Case(
        "403-unsupported-region",
        403,
        _openai(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        ErrorClass.AUTH,
    ),
    Case(
        "400-openai-context",
        400,
        _openai(
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 173172 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-groq-context",
        400,
        _openai(
            "Please reduce the length of the messages or completion.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "422-together-context",
        422,
        _openai(
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8193. "
            "Given: 8000 `inputs` tokens and 1000 `max_new_tokens`",
            "invalid_request_error",
            None,
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-fireworks-context",
        400,
        {
            "error": {
                "object": "error",
                "type": "invalid_request_error",
                "message": "The prompt is too long: 262377, model maximum context length: 262143",
            }
        },
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-openrouter-context",
        400,
        {
            "error": {
                "message": "This endpoint's maximum context length is 131072 tokens. However, "
                "you requested about 138956 tokens (7884 of text input, 131072 in the output). "
                'Please reduce the length of either one, or use the "middle-out" transform.',
                "code": 400,
            }
        },
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-invalid-param",
        400,
        _openai(
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
            "invalid_request_error",
            "invalid_type",
            "temperature",
        ),
        ErrorClass.BAD_REQUEST,
    ),
    Case(
        "413-proxy-html",
        413,
        b"<html><head><title>413 Request Entity Too Large</title></head></html>",
        ErrorClass.BAD_REQUEST,
        content_type="text/html",
    ),
    Case(
        "422-vllm-validation",
        422,
        {"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]},
        ErrorClass.BAD_REQUEST,
    ),
    Case(
        "404-model-not-found",
        404,
        _openai(
            "The model `gpt-5x` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        ErrorClass.NOT_FOUND,
    ),
    Case(
        "404-ollama-not-pulled",
        404,
        {"error": 'model "llama9" not found, try pulling it first'},
        ErrorClass.NOT_FOUND,
    ),
    Case(
        "500-server-error",
        500,
        _openai(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        ErrorClass.SERVER_ERROR,
    ),
    Case(
        "502-cloudflare-html",
        502,
        b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>",
        ErrorClass.SERVER_ERROR,
        content_type="text/html",
    ),
    Case(
        "503-overloaded-retry-after",
        503,
        _openai(
            "The engine is currently overloaded, please try again later.", "server_error", None
        ),
        ErrorClass.SERVER_ERROR,
        retry_after=3.0,
        headers={"retry-after": "3"},
    ),
]


def _anthropic(type_: str, message: str) -> Any:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": "req_011CWdepJvA2D819tdYYq4h7",
    }


ANTHROPIC_CASES = [
    Case(
        "408-timeout",
        408,
        _anthropic("timeout_error", "Request timeout"),
        ErrorClass.TIMEOUT,
    ),
    Case(
        "429-rate-limit-retry-after",
        429,
        _anthropic(
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit "
            "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later.",
        ),
        ErrorClass.RATE_LIMIT,
        retry_after=30.0,
        headers={
            "retry-after": "30",
            "anthropic-ratelimit-input-tokens-remaining": "0",
            "anthropic-ratelimit-input-tokens-reset": _rfc3339_in(45),
        },
    ),
    Case(
        "429-rate-limit-reset-headers",
        429,
        _anthropic("rate_limit_error", "Number of requests has exceeded your rate limit."),
        ErrorClass.RATE_LIMIT,
        retry_after=20.0,
        headers={
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": _rfc3339_in(20),
            "anthropic-ratelimit-tokens-remaining": "150000",
            "anthropic-ratelimit-tokens-reset": _rfc3339_in(59),
        },
    ),
    Case(
        "400-credit-balance",
        400,
        _anthropic(
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
        ErrorClass.QUOTA,
    ),
    Case(
        "400-spend-limit",
        400,
        _anthropic(
            "invalid_request_error",
            "You have reached your specified API usage limits. You will regain access on "
            "2025-07-01 at 00:00 UTC.",
        ),
        ErrorClass.QUOTA,
    ),
    Case(
        "402-billing",
        402,
        _anthropic("billing_error", "There is an issue with your billing."),
        ErrorClass.QUOTA,
    ),
    Case(
        "401-authentication",
        401,
        _anthropic("authentication_error", "invalid x-api-key"),
        ErrorClass.AUTH,
    ),
    Case(
        "403-permission",
        403,
        _anthropic("permission_error", "Your API key does not have permission to use this."),
        ErrorClass.AUTH,
    ),
    Case(
        "400-prompt-too-long",
        400,
        _anthropic("invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-exceed-context-limit",
        400,
        _anthropic(
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, "
            "decrease input length or `max_tokens` and try again",
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-max-tokens-too-high",
        400,
        _anthropic(
            "invalid_request_error",
            "max_tokens: 10000 > 4096, which is the maximum allowed number of output tokens for "
            "claude-3-5-sonnet-20240620",
        ),
        ErrorClass.BAD_REQUEST,
    ),
    Case(
        "413-request-too-large",
        413,
        _anthropic("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        ErrorClass.BAD_REQUEST,
    ),
    Case(
        "404-model",
        404,
        _anthropic("not_found_error", "model: claude-9-opus"),
        ErrorClass.NOT_FOUND,
    ),
    Case(
        "500-api-error",
        500,
        _anthropic("api_error", "Internal server error"),
        ErrorClass.SERVER_ERROR,
    ),
    Case(
        "529-overloaded",
        529,
        _anthropic("overloaded_error", "Overloaded"),
        ErrorClass.SERVER_ERROR,
        retry_after=1.5,
        headers={"retry-after-ms": "1500"},
    ),
]


def _gemini(code: int, status: str, message: str, details: list[Any] | None = None) -> Any:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _quota_failure(quota_id: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": (
                    "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                ),
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
                "quotaValue": "15",
            }
        ],
    }


def _retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


_GEMINI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)

GEMINI_CASES = [
    Case(
        "409-aborted",
        409,
        _gemini(409, "ABORTED", "The operation was aborted."),
        ErrorClass.TIMEOUT,
    ),
    Case(
        "429-per-minute-retry-delay",
        429,
        _gemini(
            429,
            "RESOURCE_EXHAUSTED",
            _GEMINI_QUOTA_MESSAGE,
            [
                _quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{"description": "Learn more", "url": "https://ai.google.dev"}],
                },
                _retry_info("31s"),
            ],
        ),
        ErrorClass.RATE_LIMIT,
        retry_after=31.0,
    ),
    Case(
        "429-per-day-quota",
        429,
        _gemini(
            429,
            "RESOURCE_EXHAUSTED",
            _GEMINI_QUOTA_MESSAGE,
            [
                _quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
                _retry_info("3600s"),
            ],
        ),
        ErrorClass.QUOTA,
        retry_after=3600.0,
    ),
    Case(
        "400-api-key-invalid",
        400,
        _gemini(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        ),
        ErrorClass.AUTH,
    ),
    Case(
        "403-suspended-key-echoed",
        403,
        _gemini(
            403,
            "PERMISSION_DENIED",
            f"Permission denied: Consumer 'api_key:{GOOGLE_KEY}' has been suspended.",
        ),
        ErrorClass.AUTH,
    ),
    Case(
        "400-location-unsupported",
        400,
        _gemini(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
        ErrorClass.AUTH,
    ),
    Case(
        "400-input-token-count",
        400,
        _gemini(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed "
            "(1048576).",
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    Case(
        "400-invalid-argument",
        400,
        _gemini(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified\n",
        ),
        ErrorClass.BAD_REQUEST,
    ),
    Case(
        "404-model",
        404,
        _gemini(
            404,
            "NOT_FOUND",
            "models/gemini-9-flash is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.",
        ),
        ErrorClass.NOT_FOUND,
    ),
    Case(
        "500-internal",
        500,
        _gemini(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        ),
        ErrorClass.SERVER_ERROR,
    ),
    Case(
        "503-unavailable",
        503,
        _gemini(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        ErrorClass.SERVER_ERROR,
        retry_after=10.0,
        headers={"retry-after": "10"},
    ),
    Case(
        "504-deadline",
        504,
        _gemini(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        ErrorClass.SERVER_ERROR,
    ),
]
