"""Typed, frozen configuration: the models of SPEC.md's config file.

Loading (YAML, ``${VAR}`` interpolation, ``.env``, zero-config) and path-named errors live below
the models. The environment is read here and nowhere else.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = [
    "AlertConfig",
    "Config",
    "DeploymentConfig",
    "HealthConfig",
    "Price",
    "Provider",
    "RateLimit",
    "RateLimitsConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "RouteConfig",
    "ServerConfig",
    "StateConfig",
    "StoreConfig",
    "TelemetryConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(enum.StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    GROQ = "groq"
    TOGETHER = "together"
    FIREWORKS = "fireworks"
    OPENROUTER = "openrouter"
    OLLAMA = "ollama"
    OPENAI_COMPATIBLE = "openai-compatible"


DEFAULT_API_BASES: dict[Provider, str] = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.ANTHROPIC: "https://api.anthropic.com/v1",
    Provider.GEMINI: "https://generativelanguage.googleapis.com/v1beta",
    Provider.GROQ: "https://api.groq.com/openai/v1",
    Provider.TOGETHER: "https://api.together.xyz/v1",
    Provider.FIREWORKS: "https://api.fireworks.ai/inference/v1",
    Provider.OPENROUTER: "https://openrouter.ai/api/v1",
    Provider.OLLAMA: "http://127.0.0.1:11434/v1",
}

_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+?)s?\s*$")

PositiveSeconds = Annotated[float, Field(gt=0)]
NonNegativeSeconds = Annotated[float, Field(ge=0)]


class RateLimit(_Model):
    """``count`` requests per ``per_seconds``; written ``100/minute`` in the file."""

    count: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE_RE.match(text.lower()) if isinstance(text, str) else None
        if match is None or match.group(2) not in _RATE_UNITS or int(match.group(1)) <= 0:
            raise ValueError(
                f"bad rate limit {text!r}: write COUNT/UNIT with a positive COUNT and UNIT one of "
                "second, minute, hour, day (e.g. '100/minute')"
            )
        return cls(count=int(match.group(1)), per_seconds=_RATE_UNITS[match.group(2)])

    def __str__(self) -> str:
        unit = {v: k for k, v in _RATE_UNITS.items()}.get(self.per_seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per_seconds:g}s"


def _rate_limit(value: Any) -> Any:
    return RateLimit.parse(value) if isinstance(value, str) else value


class RateLimitsConfig(_Model):
    default: RateLimit | None = None
    paths: dict[str, RateLimit] = Field(default_factory=dict)

    _parse_default = field_validator("default", mode="before")(_rate_limit)

    @field_validator("paths", mode="before")
    @classmethod
    def _parse_paths(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {path: _rate_limit(limit) for path, limit in value.items()}
        return value


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    api_keys: tuple[SecretStr, ...] = ()
    allow_open: bool = False
    admin_key: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    rate_limits: RateLimitsConfig | None = None

    @field_validator("api_keys", mode="after")
    @classmethod
    def _drop_empty_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        return tuple(key for key in value if key.get_secret_value())

    @field_validator("admin_key", mode="after")
    @classmethod
    def _empty_admin_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None


class StateConfig(_Model):
    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "failover:"


class StoreConfig(_Model):
    url: str = "sqlite:///failover.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value == "none" or value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            return value
        raise ValueError(
            f"unsupported store url {value!r}: use sqlite:///PATH, postgresql://... or none"
        )


class AlertLevel(enum.IntEnum):
    INFO = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


class AlertConfig(_Model):
    kind: Literal["log", "webhook"]
    url: str | None = None
    min_level: Literal["INFO", "MEDIUM", "HIGH", "CRITICAL"] = "INFO"
    dedup_seconds: NonNegativeSeconds = 60.0

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> AlertConfig:
        if self.kind == "webhook" and not self.url:
            raise ValueError("a webhook alert needs a url")
        return self


class TelemetryConfig(_Model):
    otlp_endpoint: str | None = None
    service_name: str = "failover"
    capture_content: bool = False


class HealthConfig(_Model):
    failure_threshold: int = Field(default=5, ge=1)
    recovery_seconds: PositiveSeconds = 60.0
    max_recovery_seconds: PositiveSeconds = 600.0
    rate_limit_cooldown: PositiveSeconds = 60.0
    check_on_startup: bool = True

    @model_validator(mode="after")
    def _max_at_least_recovery(self) -> HealthConfig:
        if self.max_recovery_seconds < self.recovery_seconds:
            raise ValueError("max_recovery_seconds must be at least recovery_seconds")
        return self


class Price(_Model):
    """USD per million tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class DeploymentConfig(_Model):
    """One model at one provider. ``api_key`` is ``None`` when its variable was unset."""

    name: str = ""
    provider: Provider
    model: str
    api_key: SecretStr | None = None
    api_base: str | None = None
    timeout: PositiveSeconds = 30.0
    max_retries: int = Field(default=1, ge=0, le=10)
    price: Price = Field(default_factory=Price)
    verify_tls: bool = True
    ca_bundle: str | None = None

    @model_validator(mode="after")
    def _base_url(self) -> DeploymentConfig:
        if self.api_base is None and self.provider is Provider.OPENAI_COMPATIBLE:
            raise ValueError("provider 'openai-compatible' needs an api_base")
        return self

    @property
    def base_url(self) -> str:
        """``api_base`` or the provider's default, without a trailing slash."""
        return (self.api_base or DEFAULT_API_BASES[self.provider]).rstrip("/")

    @property
    def configured(self) -> bool:
        """False when the key is missing (unset variable) and the provider needs one."""
        return self.api_key is not None or self.provider in (
            Provider.OLLAMA,
            Provider.OPENAI_COMPATIBLE,
        )


class RetryConfig(_Model):
    backoff: NonNegativeSeconds = 0.25
    max_backoff: NonNegativeSeconds = 4.0
    jitter: bool = True


class RetryBudgetConfig(_Model):
    ratio: float = Field(default=0.2, ge=0)
    min_per_second: float = Field(default=10.0, ge=0)
    window_seconds: PositiveSeconds = 10.0


class RouteConfig(_Model):
    """A name clients ask for: ordered targets and the policy that runs them."""

    name: str = ""
    targets: tuple[str, ...] = Field(min_length=1)
    hedge_after: PositiveSeconds | Literal["auto"] | None = None
    hedge_bounds: tuple[PositiveSeconds, PositiveSeconds] | None = None
    deadline: PositiveSeconds = 60.0
    default_response: str | None = None
    finish_losers: NonNegativeSeconds = 0.0
    retry: RetryConfig = Field(default_factory=RetryConfig)
    retry_budget: RetryBudgetConfig = Field(default_factory=RetryBudgetConfig)

    @model_validator(mode="after")
    def _hedge_consistent(self) -> RouteConfig:
        if isinstance(self.hedge_after, float) and self.hedge_after >= self.deadline:
            raise ValueError(
                f"hedge_after ({self.hedge_after:g}) must be less than deadline "
                f"({self.deadline:g})"
            )
        if self.hedge_bounds is not None:
            if self.hedge_after != "auto":
                raise ValueError("hedge_bounds is only valid with hedge_after: auto")
            low, high = self.hedge_bounds
            if low > high:
                raise ValueError("hedge_bounds must be [low, high] with low <= high")
        return self

    @property
    def hedged(self) -> bool:
        return self.hedge_after is not None


class Config(_Model):
    """The whole gateway configuration."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    alerts: tuple[AlertConfig, ...] = (AlertConfig(kind="log"),)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    deployments: dict[str, DeploymentConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
