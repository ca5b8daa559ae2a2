"""How long a provider asked us to wait, from its headers or its error body.

the order: ``retry-after-ms``, then ``retry-after`` (seconds or an HTTP date), then the
provider's rate-limit reset headers, then (Gemini) the ``RetryInfo.retryDelay`` in the error body:

- OpenAI, Groq and other OpenAI clones: ``x-ratelimit-reset-requests`` / ``-tokens`` as Go-style
  durations (``1s``, ``6m0s``, ``20ms``, ``2m59.56s``); Azure sends bare seconds.
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset`` as RFC 3339
  timestamps.
- Gemini: ``{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
  "retryDelay": "30s"}]}}``.

Reset headers describe when a window refills, not a wait, so they are read only for a rate limit,
and the windows that are exhausted (``remaining: 0``) decide; failing that, the longest reset.

>>> from multidict import CIMultiDict
>>> retry_after(CIMultiDict({"retry-after": "7"}), None, now=0.0)
7.0
>>> retry_after(CIMultiDict({"x-ratelimit-reset-tokens": "6m0s"}), None, now=0.0, rate_limited=True)
360.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["parse_duration", "retry_after"]

# (reset header, remaining header) pairs of each provider family.
_RESET_HEADERS = (
    ("x-ratelimit-reset-requests", "x-ratelimit-remaining-requests"),
    ("x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens"),
    ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-requests-remaining"),
    ("anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-remaining"),
    ("anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-input-tokens-remaining"),
    ("anthropic-ratelimit-output-tokens-reset", "anthropic-ratelimit-output-tokens-remaining"),
)

_DURATION = re.compile(r"(?:\d+(?:\.\d*)?(?:ns|us|µs|ms|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|h|m|s)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

# A bare number this large is a Unix timestamp, not a number of seconds to wait.
_EPOCH_THRESHOLD = 1e9


def retry_after(
    headers: Mapping[str, str] | None,
    payload: Any,
    *,
    now: float,
    rate_limited: bool = False,
) -> float | None:
    """Seconds to wait before the next call, or ``None`` when the provider did not say.

    ``headers`` must be case-insensitive (aiohttp's are); ``payload`` is the parsed error body
    (or ``None``); ``now`` is the wall-clock time, for dates and timestamps. Never negative.
    """
    if headers is not None:
        value = headers.get("retry-after-ms")
        if value is not None and (seconds := _number(value)) is not None:
            return seconds / 1000.0
        value = headers.get("retry-after")
        if value is not None and (seconds := _seconds_or_date(value, now)) is not None:
            return seconds
        if rate_limited and (seconds := _reset_headers(headers, now)) is not None:
            return seconds
    return _retry_delay(payload)


def parse_duration(text: str) -> float | None:
    """A Go-style duration (``6m0s``, ``20ms``, ``1.5s``) in seconds; ``None`` if it is not one."""
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text))


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def _seconds_or_date(text: str, now: float) -> float | None:
    seconds = _number(text)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _reset_value(text: str, now: float) -> float | None:
    """One reset header: a duration, bare seconds, a Unix timestamp, or an RFC 3339 time."""
    seconds = _number(text)
    if seconds is not None:
        return max(0.0, seconds - now) if seconds > _EPOCH_THRESHOLD else seconds
    seconds = parse_duration(text)
    if seconds is not None:
        return seconds
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # a time without a zone cannot be placed
    return max(0.0, when.timestamp() - now)


def _reset_headers(headers: Mapping[str, str], now: float) -> float | None:
    exhausted: list[float] = []
    others: list[float] = []
    for reset_name, remaining_name in _RESET_HEADERS:
        value = headers.get(reset_name)
        if value is None or (seconds := _reset_value(value, now)) is None:
            continue
        remaining = headers.get(remaining_name)
        spent = remaining is not None and remaining.strip() == "0"
        (exhausted if spent else others).append(seconds)
    if exhausted:
        return max(exhausted)
    return max(others) if others else None


def _retry_delay(payload: Any) -> float | None:
    """Gemini's ``google.rpc.RetryInfo`` detail, when the body carries one."""
    if isinstance(payload, list) and payload:
        payload = payload[0]  # the JSON-array form of streamGenerateContent errors
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, dict):
            continue
        kind = detail.get("@type")
        if not (isinstance(kind, str) and kind.endswith("google.rpc.RetryInfo")):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            return parse_duration(delay)
        if isinstance(delay, dict):  # the proto form {"seconds": 30, "nanos": 0}
            seconds, nanos = delay.get("seconds", 0), delay.get("nanos", 0)
            if isinstance(seconds, int | float | str) and isinstance(nanos, int | float):
                try:
                    return max(0.0, float(seconds) + float(nanos) / 1e9)
                except ValueError:
                    return None
    return None
