"""Fault profiles: what a mock upstream does to each request, as frozen values.

A :class:`Profile` is the whole behaviour of the mock. Every one of its fields can be set three
ways, with the same parser: in code (``dataclasses.replace`` or :func:`override`), by the control
API (``PUT /_mock/profile`` with a JSON object) and for one request by an ``x-mock-*`` header
(the field's name with dashes: ``error_rate`` is ``x-mock-error-rate``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ERROR_BODIES",
    "HOSTILE_MODES",
    "MALFORMED_MODES",
    "PROFILES",
    "RETRY_AFTER_FORMS",
    "SETTABLE_FIELDS",
    "STREAM_CUT_MODES",
    "Latency",
    "Profile",
    "override",
    "profile_to_dict",
]

ERROR_BODIES = ("openai", "text", "html", "empty")
MALFORMED_MODES = ("json", "no-choices", "empty-choices", "html")
HOSTILE_MODES = (
    "huge",
    "lying-length",
    "endless-chunked",
    "empty-deltas",
    "endless-line",
    "key-echo",
    "key-text",
    "drip",
)
RETRY_AFTER_FORMS = ("seconds", "date", "ms", "all")
STREAM_CUT_MODES = ("close", "eof")
_LATENCY_KINDS = ("fixed", "uniform", "lognormal")
# A typo like `x-mock-latency: 5000` (meant as ms) must not park a worker for hours.
_MAX_SECONDS = 3600.0
_MAX_GIANT_BYTES = 64 * 1024 * 1024
# A hostile answer is made as it is sent, never held: its size is bounded only to catch typos.
_MAX_HOSTILE_BYTES = 64 * 1024**3


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1]")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of numbers") from None


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds before an answer starts: fixed, uniform or lognormal, plus a share of outliers.

    Written as text: ``0.2``, ``uniform:0.1,0.5`` or ``lognormal:MEDIAN,SIGMA``, optionally
    followed by ``;outliers:RATE,LOW,HIGH`` (that share of requests takes uniform(LOW, HIGH)).

    >>> Latency.parse("lognormal:0.2,0.5;outliers:0.02,2,6")
    Latency('lognormal:0.2,0.5;outliers:0.02,2,6')
    >>> Latency.parse("0.25").sample(random.Random(0))
    0.25
    """

    kind: str = "fixed"
    a: float = 0.0  # fixed: the seconds; uniform: low; lognormal: median
    b: float = 0.0  # uniform: high; lognormal: sigma
    outlier_rate: float = 0.0
    outlier_low: float = 2.0
    outlier_high: float = 6.0

    def __post_init__(self) -> None:
        if self.kind not in _LATENCY_KINDS:
            raise ValueError(f"latency kind must be one of {', '.join(_LATENCY_KINDS)}")
        numbers = (self.a, self.b, self.outlier_low, self.outlier_high)
        if any(not math.isfinite(x) or x < 0 or x > _MAX_SECONDS for x in numbers):
            raise ValueError(f"latency seconds must be within [0, {_MAX_SECONDS:g}]")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError("uniform latency needs low <= high")
        if self.outlier_high < self.outlier_low:
            raise ValueError("latency outliers need low <= high")
        _check_rate("outlier rate", self.outlier_rate)

    @property
    def zero(self) -> bool:
        """True when every request answers at once (the fast path skips sampling)."""
        return self.kind == "fixed" and self.a == 0 and self.outlier_rate == 0

    def sample(self, rng: random.Random) -> float:
        """One delay, in seconds."""
        if self.outlier_rate and rng.random() < self.outlier_rate:
            return rng.uniform(self.outlier_low, self.outlier_high)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "lognormal" and self.a > 0:
            return min(rng.lognormvariate(math.log(self.a), self.b), _MAX_SECONDS)
        return self.a

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Read the text form (see the class docstring); raises ValueError."""
        main, _, outliers = text.strip().partition(";")
        kind, sep, args = main.partition(":")
        if not sep:
            kind, args = "fixed", main
        values = _floats(args, "latency")
        fields: dict[str, Any] = {"kind": kind.strip()}
        expected = 1 if fields["kind"] == "fixed" else 2
        if len(values) != expected:
            raise ValueError(f"latency {text!r}: {fields['kind']} takes {expected} number(s)")
        fields["a"] = values[0]
        fields["b"] = values[1] if expected == 2 else 0.0
        if outliers:
            name, _, args = outliers.partition(":")
            rates = _floats(args, "latency outliers")
            if name.strip() != "outliers" or len(rates) != 3:
                raise ValueError(f"latency {text!r}: expected ';outliers:RATE,LOW,HIGH'")
            fields.update(outlier_rate=rates[0], outlier_low=rates[1], outlier_high=rates[2])
        return cls(**fields)

    def __str__(self) -> str:
        text = f"{self.a:g}" if self.kind == "fixed" else f"{self.kind}:{self.a:g},{self.b:g}"
        if self.outlier_rate:
            text += f";outliers:{self.outlier_rate:g},{self.outlier_low:g},{self.outlier_high:g}"
        return text

    def __repr__(self) -> str:
        return f"Latency({str(self)!r})"


@dataclass(frozen=True, slots=True)
class Profile:
    """The behaviour of a mock upstream; see the package docstring for each field's meaning.

    >>> PROFILES["flaky"].error_rate
    0.2
    >>> override(PROFILES["healthy"], {"latency": "0.5"}).latency
    Latency('0.5')
    """

    name: str
    description: str
    latency: Latency = Latency()
    error_rate: float = 0.0
    error_status: tuple[int, ...] = ()
    error_code: str | None = None
    error_type: str | None = None
    error_body: str = "openai"
    rate_limit_share: float = 0.0
    rps_limit: float | None = None
    retry_after: float | None = None
    retry_after_form: str = "seconds"
    hang: bool = False
    drop: bool = False
    malformed: tuple[str, ...] = ()
    content_type: str | None = None
    stream_cut_after: int | None = None
    stream_cut_mode: str = "close"
    stream_error_after: int | None = None
    chunk_delay: float = 0.0
    giant: int | None = None
    hostile: tuple[str, ...] = ()
    hostile_bytes: int = 100_000_000
    drip_interval: float = 2.0

    def __post_init__(self) -> None:
        _check_rate("error_rate", self.error_rate)
        _check_rate("rate_limit_share", self.rate_limit_share)
        _check_choice("error_body", self.error_body, ERROR_BODIES)
        _check_choice("retry_after_form", self.retry_after_form, RETRY_AFTER_FORMS)
        _check_choice("stream_cut_mode", self.stream_cut_mode, STREAM_CUT_MODES)
        for mode in self.malformed:
            _check_choice("malformed", mode, MALFORMED_MODES)
        for mode in self.hostile:
            _check_choice("hostile", mode, HOSTILE_MODES)
        for status in self.error_status:
            if not 400 <= status <= 599:
                raise ValueError(f"error_status: {status} is not an HTTP error status")
        for name in ("retry_after", "chunk_delay"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= _MAX_SECONDS:
                raise ValueError(f"{name} must be within [0, {_MAX_SECONDS:g}] seconds")
        if self.rps_limit is not None and not self.rps_limit > 0:
            raise ValueError("rps_limit must be positive")
        for name in ("stream_cut_after", "stream_error_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.giant is not None and not 0 < self.giant <= _MAX_GIANT_BYTES:
            raise ValueError(f"giant must be within (0, {_MAX_GIANT_BYTES}] bytes")
        if not 0 < self.hostile_bytes <= _MAX_HOSTILE_BYTES:
            raise ValueError(f"hostile_bytes must be within (0, {_MAX_HOSTILE_BYTES}] bytes")
        if not 0 < self.drip_interval <= _MAX_SECONDS:
            raise ValueError(f"drip_interval must be within (0, {_MAX_SECONDS:g}] seconds")


# Parsers from a header string or a JSON value to a field's type. Headers give strings, the
# control API gives JSON; both go through these so that the two never disagree.


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return float(value)
    raise ValueError("expected a number")


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value)
    raise ValueError("expected an integer")


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected a boolean (1/0, true/false)")


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    raise ValueError("expected a string")


def _to_words(value: object) -> tuple[str, ...]:
    parts = value if isinstance(value, list | tuple) else _to_str(value).split(",")
    return tuple(_to_str(part) for part in parts if _to_str(part))


def _to_statuses(value: object) -> tuple[int, ...]:
    if isinstance(value, list | tuple):
        return tuple(_to_int(part) for part in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    return tuple(int(part) for part in _to_str(value).split(",") if part.strip())


def _to_latency(value: object) -> Latency:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Latency(a=float(value))
    return Latency.parse(_to_str(value))


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse_optional(value: object) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return parse(value)

    return parse_optional


_PARSERS: dict[str, Callable[[object], Any]] = {
    "description": _to_str,
    "latency": _to_latency,
    "error_rate": _to_float,
    "error_status": _to_statuses,
    "error_code": _optional(_to_str),
    "error_type": _optional(_to_str),
    "error_body": _to_str,
    "rate_limit_share": _to_float,
    "rps_limit": _optional(_to_float),
    "retry_after": _optional(_to_float),
    "retry_after_form": _to_str,
    "hang": _to_bool,
    "drop": _to_bool,
    "malformed": _to_words,
    "content_type": _optional(_to_str),
    "stream_cut_after": _optional(_to_int),
    "stream_cut_mode": _to_str,
    "stream_error_after": _optional(_to_int),
    "chunk_delay": _to_float,
    "giant": _optional(_to_int),
    "hostile": _to_words,
    "hostile_bytes": _to_int,
    "drip_interval": _to_float,
}

SETTABLE_FIELDS = frozenset(_PARSERS)
"""The fields the control API and the ``x-mock-*`` headers may set."""


def override(profile: Profile, changes: Mapping[str, object]) -> Profile:
    """A copy of ``profile`` with ``changes`` (field name -> header text or JSON value) applied.

    Raises ValueError naming the field when a name is unknown or a value does not parse.
    """
    fields: dict[str, Any] = {}
    for key, raw in changes.items():
        parse = _PARSERS.get(key)
        if parse is None:
            raise ValueError(f"unknown profile field {key!r}")
        try:
            fields[key] = parse(raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {raw!r}: {exc}") from None
    try:
        return dataclasses.replace(profile, **fields)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The profile as JSON-ready values, in the form :func:`override` reads back."""
    data: dict[str, Any] = {}
    for field in dataclasses.fields(profile):
        value = getattr(profile, field.name)
        if isinstance(value, Latency):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        data[field.name] = value
    return data


PROFILES: Mapping[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile("healthy", "answers every request at once"),
        Profile("slow", "answers every request after a fixed 2 s", latency=Latency(a=2.0)),
        Profile(
            "heavy-tail",
            "lognormal latency, median 200 ms, and 2% outliers of 2-6 s",
            latency=Latency("lognormal", 0.2, 0.5, outlier_rate=0.02),
        ),
        Profile(
            "flaky", "20% of requests fail with 500 or 503", error_rate=0.2, error_status=(500, 503)
        ),
        Profile(
            "rate-limited",
            "30% of requests get 429 rate_limit_exceeded with Retry-After 1 s",
            rate_limit_share=0.3,
            retry_after=1.0,
            retry_after_form="all",
        ),
        Profile(
            "down",
            "every request gets 503 (the port stays open)",
            error_rate=1.0,
            error_status=(503,),
        ),
        Profile("hanging", "accepts every request and never answers", hang=True),
        Profile(
            "malformed",
            "200 with invalid JSON or without choices",
            malformed=("json", "no-choices"),
        ),
        Profile(
            "stream-cut",
            "streams are cut after 3 chunks without [DONE]; bodies cut halfway",
            stream_cut_after=3,
        ),
        Profile(
            "hostile",
            "each request meets one hostile behaviour at random: a 100 MB answer, a lying "
            "Content-Length, endless bodies, streams that never commit, errors quoting the key, "
            "a drip",
            hostile=HOSTILE_MODES,
        ),
    )
}
"""The named profiles of ``failover mock-upstream --profile NAME``."""
