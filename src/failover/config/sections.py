"""The gateway-wide sections of the file: server, state, store, alerts, telemetry, health.

>>> ServerConfig(host="0.0.0.0", api_keys=("client-key",)).host
'0.0.0.0'
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from failover.config.base import FrozenModel, NonNegativeSeconds, PositiveSeconds, Problems
from failover.config.secrets import http_url_problem

SQLITE_URL_PREFIX = "sqlite:///"

_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_UNIT_NAMES = {seconds: unit for unit, seconds in _RATE_UNITS.items()}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+?)s?\s*$")


class RateLimit(FrozenModel):
    """``count`` requests per ``per_seconds``; written ``100/minute`` in the file.

    >>> str(RateLimit.parse("100/minute"))
    '100/minute'
    """

    count: int = Field(gt=0)
    per_seconds: float = Field(gt=0)

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read ``COUNT/UNIT`` (``second``, ``minute``, ``hour``, ``day``, plural allowed)."""
        match = _RATE_RE.match(text.lower()) if isinstance(text, str) else None
        if match is None or match.group(2) not in _RATE_UNITS or int(match.group(1)) <= 0:
            raise ValueError(
                f"bad rate limit {text!r}: write COUNT/UNIT with a positive COUNT and UNIT one of "
                "second, minute, hour, day (e.g. '100/minute')"
            )
        return cls(count=int(match.group(1)), per_seconds=_RATE_UNITS[match.group(2)])

    def __str__(self) -> str:
        unit = _RATE_UNIT_NAMES.get(self.per_seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per_seconds:g}s"


def _parse_rate_limit(value: Any) -> Any:
    if isinstance(value, str):
        return RateLimit.parse(value)
    if isinstance(value, RateLimit | Mapping):
        return value
    raise ValueError("must be a rate limit like '100/minute'")


_RateLimitText = Annotated[RateLimit, BeforeValidator(_parse_rate_limit)]


class RateLimitsConfig(FrozenModel):
    """Inbound limits per client key: ``default`` for every path, ``paths`` for exact paths."""

    default: _RateLimitText | None = None
    paths: Mapping[str, _RateLimitText] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _paths_absolute(self) -> Self:
        bad = [path for path in self.paths if not path.startswith("/")]
        if bad:
            raise Problems([(("paths", path), "a path must start with '/'") for path in bad])
        return self


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerConfig(FrozenModel):
    """The HTTP gateway: where it listens, who may call it, how much it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    api_keys: tuple[SecretStr, ...] = ()
    allow_open: bool = False
    admin_key: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    rate_limits: RateLimitsConfig | None = None

    @field_validator("api_keys", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        # `api_keys: ${FAILOVER_KEY}` (no brackets) means that one key.
        return [value] if isinstance(value, str | SecretStr) else value

    @field_validator("api_keys", mode="after")
    @classmethod
    def _drop_empty_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        return tuple(key for key in value if key.get_secret_value())

    @field_validator("admin_key", mode="after")
    @classmethod
    def _empty_admin_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @model_validator(mode="after")
    def _auth_or_loopback(self) -> Self:
        # An open gateway on a reachable interface spends the operator's provider keys for anyone.
        if not self.api_keys and not self.allow_open and not _is_loopback(self.host):
            raise Problems.at(
                "host",
                f"no api_keys: a gateway without auth may listen only on a loopback host, "
                f"not {self.host!r}; set server.api_keys, or allow_open: true",
            )
        return self


class StateConfig(FrozenModel):
    """Where health, cooldowns and inbound limits live; several gateways may share Redis."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "failover:"

    @model_validator(mode="after")
    def _redis_url(self) -> Self:
        # The URL may carry a password: name its scheme only, never the URL.
        if self.backend == "redis" and not self.url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise Problems.at("url", "must be a redis://, rediss:// or unix:// URL")
        return self


class StoreConfig(FrozenModel):
    """The request log: ``sqlite:///PATH``, ``postgresql://...`` or ``none``."""

    url: str = SQLITE_URL_PREFIX + "failover.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value == "none" or value.startswith((SQLITE_URL_PREFIX, "postgresql://", "postgres://")):
            return value
        # Only the scheme: the rest of a database URL may hold a password.
        scheme = value.partition("://")[0] if "://" in value else ""
        shown = f" '{scheme}://...'" if scheme.isidentifier() else ""
        raise ValueError(
            f"unsupported store url{shown}: use sqlite:///PATH, postgresql://... or none"
        )


class AlertLevel(enum.IntEnum):
    """Alert severities, ordered: ``INFO < MEDIUM < HIGH < CRITICAL``."""

    INFO = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


class AlertConfig(FrozenModel):
    """One alert sink: ``log``, or ``webhook`` (one JSON POST per alert)."""

    kind: Literal["log", "webhook"]
    url: str | None = None
    min_level: Literal["INFO", "MEDIUM", "HIGH", "CRITICAL"] = "INFO"
    dedup_seconds: NonNegativeSeconds = 60.0

    @field_validator("min_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> Self:
        if self.kind == "webhook" and not self.url:
            raise Problems.at("url", "a webhook alert needs a url")
        return self


class TelemetryConfig(FrozenModel):
    """Optional OpenTelemetry traces; prompts leave the gateway only with ``capture_content``."""

    otlp_endpoint: str | None = None
    service_name: str = "failover"
    capture_content: bool = False

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        problem = http_url_problem(value) if value else None
        if problem is not None:
            raise ValueError(problem)
        return value


class HealthConfig(FrozenModel):
    """Circuit breaker and cooldown settings shared by every deployment."""

    failure_threshold: int = Field(default=5, ge=1)
    recovery_seconds: PositiveSeconds = 60.0
    max_recovery_seconds: PositiveSeconds = 600.0
    rate_limit_cooldown: PositiveSeconds = 60.0
    check_on_startup: bool = True

    @model_validator(mode="after")
    def _max_at_least_recovery(self) -> Self:
        if self.max_recovery_seconds < self.recovery_seconds:
            raise Problems.at(
                "max_recovery_seconds",
                f"must be at least recovery_seconds ({self.recovery_seconds:g})",
            )
        return self
