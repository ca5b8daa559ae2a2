"""One request's fate: the profile, the request's ``x-mock-*`` headers and the dice.

Pure and synchronous: :func:`request_profile` folds the headers into the profile, :func:`decide`
draws the outcome from a seeded ``random.Random``, and :class:`RateBudget` is a token bucket that
takes ``now``. The server does the waiting and the writing.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from failover.mock_upstream.profiles import Profile, override

__all__ = [
    "HEADER_PREFIX",
    "KEY_MODES",
    "Decision",
    "Outcome",
    "RateBudget",
    "decide",
    "request_profile",
]

HEADER_PREFIX = "x-mock-"
# Server-wide by nature: a budget shared by all requests cannot be set by one of them.
_NOT_PER_REQUEST = frozenset({"rps_limit", "description"})


class Outcome(enum.StrEnum):
    """What the mock does with a request; also the keys of ``stats.outcomes`` (a hostile one is
    counted by its mode: ``hostile_huge``, ...)."""

    OK = "ok"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    HANG = "hang"
    DROP = "drop"
    MALFORMED = "malformed"
    HOSTILE = "hostile"


@dataclass(frozen=True, slots=True)
class Decision:
    """The drawn fate of one request: what to do, after how long, with which status."""

    outcome: Outcome
    delay: float = 0.0
    status: int = 200
    malformed: str | None = None
    hostile: str | None = None  # the hostile mode drawn (see mock_upstream.hostile)


OK_AT_ONCE = Decision(Outcome.OK)
# The hostile modes that answer an error: its status is the profile's error status, else 400.
KEY_MODES = frozenset({"key-echo", "key-text"})


class RateBudget:
    """A token bucket: ``limit`` requests per second, bursts up to one second's worth.

    >>> budget = RateBudget(2.0, now=0.0)
    >>> [budget.allow(0.0), budget.allow(0.0), budget.allow(0.0), budget.allow(0.5)]
    [True, True, False, True]
    """

    __slots__ = ("_last", "_tokens", "limit")

    def __init__(self, limit: float, *, now: float) -> None:
        self.limit = limit
        self._tokens = limit
        self._last = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.limit, self._tokens + elapsed * self.limit)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def __repr__(self) -> str:
        return f"<RateBudget {self.limit:g}/s tokens={self._tokens:.1f}>"


def request_profile(
    profile: Profile, headers: Iterable[tuple[str, str]], profiles: Mapping[str, Profile]
) -> Profile:
    """``profile`` with the request's ``x-mock-*`` headers applied; raises ValueError.

    ``x-mock-profile: NAME`` starts from that named profile instead. An error status, or an
    error code outside ``x-mock-stream-error-after``, without ``x-mock-error-rate`` fails the
    request for sure; an error code without a status takes the code's own status
    (``insufficient_quota`` is a 429).
    """
    base = profile
    changes: dict[str, str] = {}
    for key, value in headers:
        lowered = key.lower()
        if not lowered.startswith(HEADER_PREFIX):
            continue
        field = lowered[len(HEADER_PREFIX) :].replace("-", "_")
        if field == "profile":
            found = profiles.get(value.strip())
            if found is None:
                raise ValueError(f"{key}: unknown profile {value!r}")
            base = found
        elif field in _NOT_PER_REQUEST:
            raise ValueError(f"{key}: set it with PUT /_mock/profile, not per request")
        else:
            changes[field] = value
    # An error event inside a stream reads its code too; then the answer itself is a 200.
    code_fails = "error_code" in changes and "stream_error_after" not in changes
    if "error_status" in changes or code_fails:
        changes.setdefault("error_rate", "1")
        changes.setdefault("error_status", "")
    try:
        return override(base, changes) if changes else base
    except ValueError as exc:
        raise ValueError(f"bad {HEADER_PREFIX}* header: {exc}") from None


def decide(
    profile: Profile, rng: random.Random, *, over_budget: bool, default_status: int = 500
) -> Decision:
    """Draw one request's fate; ``over_budget`` is the answer of the profile's rate budget.

    Precedence: drop, hang, hostile, over the rate budget, the 429 share, the error rate,
    malformed, ok. The latency applies to every outcome (a slow error is as real as a fast one).
    A hostile mode that answers an error (``key-echo``, ``key-text``) takes its status from the
    profile's ``error_status`` (one drawn), else 400: the status a gateway passes to its client.
    """
    delay = 0.0 if profile.latency.zero else profile.latency.sample(rng)
    if profile.drop:
        return Decision(Outcome.DROP, delay)
    if profile.hang:
        return Decision(Outcome.HANG, delay)
    if profile.hostile:
        mode = rng.choice(profile.hostile)
        status = 200
        if mode in KEY_MODES:
            status = rng.choice(profile.error_status) if profile.error_status else 400
        return Decision(Outcome.HOSTILE, delay, status, hostile=mode)
    if over_budget or (profile.rate_limit_share and rng.random() < profile.rate_limit_share):
        return Decision(Outcome.RATE_LIMITED, delay, 429)
    if profile.error_rate and rng.random() < profile.error_rate:
        statuses = profile.error_status
        status = rng.choice(statuses) if statuses else default_status
        return Decision(Outcome.ERROR, delay, status)
    if profile.malformed:
        return Decision(Outcome.MALFORMED, delay, 200, rng.choice(profile.malformed))
    if delay:
        return Decision(Outcome.OK, delay)
    return OK_AT_ONCE
