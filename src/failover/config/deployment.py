"""Deployments: one model at one provider, and whether it has the key it needs to be called.

>>> DeploymentConfig(provider="groq", model="llama3-8b-8192").base_url
'https://api.groq.com/openai/v1'
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from failover.config.base import FrozenModel, PositiveSeconds, Problems
from failover.config.secrets import http_url_problem, is_absent_key


class Provider(enum.StrEnum):
    """The provider families a deployment can name."""

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
"""Each provider's API base, used when a deployment gives no ``api_base``."""

# Local servers usually take no key; every hosted provider needs one.
_KEYLESS_PROVIDERS = frozenset({Provider.OLLAMA, Provider.OPENAI_COMPATIBLE})


class Price(FrozenModel):
    """USD per million tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


@dataclass(frozen=True, slots=True)
class UnsetVariable:
    """Stands for a ``deployments.*.api_key`` whose ``${VAR}`` was unset (set by the loader)."""

    names: tuple[str, ...]


class DeploymentConfig(FrozenModel):
    """One model at one provider.

    ``api_key`` is ``None`` when the file gives none, its ``${VAR}`` was unset, or it is empty or
    a template placeholder (``your_key_here``). :attr:`configured` says whether the deployment
    may be called; :attr:`not_configured_reason` says why not, naming no secret.

    >>> DeploymentConfig(provider="openai", model="gpt-4o-mini").not_configured_reason
    'no api_key'
    """

    name: str = ""
    provider: Provider
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    api_base: str | None = None
    timeout: PositiveSeconds = 30.0
    max_retries: int = Field(default=1, ge=0, le=10)
    price: Price = Field(default_factory=Price)
    verify_tls: bool = True
    ca_bundle: str | None = None
    kind: Literal["chat", "embeddings"] = "chat"
    """What the deployment serves: chat (every chat-like surface) or embeddings."""
    space: str | None = None
    """An embeddings deployment's vector space (default: its ``model``): a route's embeddings
    targets must share one, so that a fallback never mixes vectors of two spaces."""
    api: Literal["chat", "responses"] = "chat"
    """For ``provider: openai``: the endpoint called, Chat Completions or the Responses API."""

    _key_problem: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _key_state(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if not isinstance(data, Mapping):
            return handler(data)
        data = dict(data)
        key = data.get("api_key")
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        problem = None
        if isinstance(key, UnsetVariable):
            problem = f"{' and '.join(key.names)} not set"
            data["api_key"] = None
        elif isinstance(key, str) and is_absent_key(key):
            problem = "api_key is empty" if not key.strip() else "api_key is a placeholder"
            data["api_key"] = None
        model = handler(data)
        # A keyless provider with an empty key is simply keyless; an unset variable still means
        # the operator expected a key that is not there.
        if model.provider in _KEYLESS_PROVIDERS and not isinstance(key, UnsetVariable):
            problem = None
        model._key_problem = problem
        return model

    @field_validator("api_base")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        # Checked here, once, so that the message masks what the URL may carry (a password, a
        # ``?key=``), as every other config error does; an empty value means the default.
        problem = http_url_problem(value) if value else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _base_url(self) -> Self:
        if self.api_base is None and self.provider is Provider.OPENAI_COMPATIBLE:
            raise Problems.at("api_base", "provider 'openai-compatible' needs an api_base")
        return self

    @model_validator(mode="after")
    def _api_and_space(self) -> Self:
        if self.api == "responses" and self.provider is not Provider.OPENAI:
            raise Problems.at("api", "'responses' is the API of provider 'openai' only")
        if self.space is not None and self.kind != "embeddings":
            raise Problems.at("space", "only an embeddings deployment (kind: embeddings) has one")
        return self

    @property
    def vector_space(self) -> str:
        """The space of an embeddings deployment's vectors: ``space``, else its ``model``."""
        return self.space or self.model

    @property
    def base_url(self) -> str:
        """``api_base`` or the provider's default, without a trailing slash."""
        return (self.api_base or DEFAULT_API_BASES[self.provider]).rstrip("/")

    @property
    def not_configured_reason(self) -> str | None:
        """Why the deployment must not be called (``'GROQ_API_KEY not set'``), or None."""
        if self._key_problem is not None:
            return self._key_problem
        if self.api_key is None and self.provider not in _KEYLESS_PROVIDERS:
            return "no api_key"
        return None

    @property
    def configured(self) -> bool:
        """False when the deployment has no usable key: report it, never call it."""
        return self.not_configured_reason is None
