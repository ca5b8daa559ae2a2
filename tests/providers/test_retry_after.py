"""Retry-After from headers and bodies, in SPEC.md's order."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from multidict import CIMultiDict

from failover.providers.retry_after import parse_duration, retry_after

NOW = 1_750_000_000.0


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("2m59.56s", 179.56),
        ("7.66s", 7.66),
        ("1h2m3s", 3723.0),
        ("", None),
        ("soon", None),
        ("5 s", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    """Go-style durations as OpenAI and Groq send them."""
    assert parse_duration(text) == pytest.approx(seconds)


def test_retry_after_ms_wins_over_everything() -> None:
    """``retry-after-ms`` comes first."""
    h = headers(retry_after_ms="1500", retry_after="9", x_ratelimit_reset_requests="30s")
    assert retry_after(h, None, now=NOW, rate_limited=True) == 1.5


def test_retry_after_seconds_then_http_date() -> None:
    """``retry-after`` as seconds, or as an HTTP date counted from now."""
    assert retry_after(headers(retry_after="12"), None, now=NOW) == 12.0
    date = formatdate(NOW + 42, usegmt=True)
    assert retry_after(headers(retry_after=date), None, now=NOW) == pytest.approx(42.0)


def test_past_date_is_zero_and_garbage_falls_through() -> None:
    """A date in the past waits nothing; an unreadable value yields to the next source."""
    past = formatdate(NOW - 100, usegmt=True)
    assert retry_after(headers(retry_after=past), None, now=NOW) == 0.0
    h = headers(retry_after="whenever", x_ratelimit_reset_tokens="3s")
    assert retry_after(h, None, now=NOW, rate_limited=True) == 3.0


def test_openai_reset_headers_prefer_the_exhausted_window() -> None:
    """Of the reset headers, the window that hit zero decides."""
    h = headers(
        x_ratelimit_reset_requests="1s",
        x_ratelimit_remaining_requests="0",
        x_ratelimit_reset_tokens="6m0s",
        x_ratelimit_remaining_tokens="12000",
    )
    assert retry_after(h, None, now=NOW, rate_limited=True) == 1.0


def test_reset_headers_without_remaining_take_the_longest() -> None:
    """Without remaining counts, the longest reset is the safe wait."""
    h = headers(x_ratelimit_reset_requests="1s", x_ratelimit_reset_tokens="6m0s")
    assert retry_after(h, None, now=NOW, rate_limited=True) == 360.0


def test_anthropic_rfc3339_reset_headers() -> None:
    """Anthropic's resets are RFC 3339 timestamps."""
    h = headers(
        anthropic_ratelimit_requests_reset="2025-06-15T15:06:40Z",  # NOW + 0
        anthropic_ratelimit_requests_remaining="10",
        anthropic_ratelimit_input_tokens_reset="2025-06-15T15:07:10Z",
        anthropic_ratelimit_input_tokens_remaining="0",
    )
    assert retry_after(h, None, now=NOW, rate_limited=True) == pytest.approx(30.0)


def test_reset_headers_only_for_rate_limits() -> None:
    """Reset headers describe windows, not waits: ignored unless rate limited."""
    h = headers(x_ratelimit_reset_tokens="6m0s")
    assert retry_after(h, None, now=NOW) is None


def test_gemini_retry_delay_in_body() -> None:
    """Gemini's RetryInfo detail gives the wait in the error body."""
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31.5s"},
            ],
        }
    }
    assert retry_after(headers(), body, now=NOW, rate_limited=True) == 31.5
    assert retry_after(None, [body], now=NOW) == 31.5


def test_nothing_said_is_none() -> None:
    """No header and no body: the provider did not say."""
    assert retry_after(headers(), {"error": {"message": "x"}}, now=NOW, rate_limited=True) is None
