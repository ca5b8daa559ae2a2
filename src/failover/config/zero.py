"""The zero-config mode: one route ``default`` over the providers whose keys are in the environment.

>>> config = config_from_env({"GROQ_API_KEY": "gsk-1", "OLLAMA_BASE_URL": "http://gpu:11434"})
>>> config.routes[ZERO_CONFIG_ROUTE].targets, config.deployments["ollama"].base_url
(('groq', 'ollama'), 'http://gpu:11434/v1')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from failover.config.base import did_you_mean
from failover.config.deployment import Provider
from failover.config.load import validate_config
from failover.config.root import Config
from failover.config.secrets import is_absent_key
from failover.errors import ConfigError

ZERO_CONFIG_ROUTE = "default"
"""The one route of the zero-config mode."""


@dataclass(frozen=True, slots=True)
class _ZeroConfigProvider:
    provider: Provider
    variable: str  # the key variable, or the base URL for Ollama
    model: str  # used unless <PROVIDER>_MODEL is set


_ZERO_CONFIG_PROVIDERS: tuple[_ZeroConfigProvider, ...] = (
    _ZeroConfigProvider(Provider.OPENAI, "OPENAI_API_KEY", "gpt-4o-mini"),
    _ZeroConfigProvider(Provider.ANTHROPIC, "ANTHROPIC_API_KEY", "claude-3-5-haiku-latest"),
    _ZeroConfigProvider(Provider.GEMINI, "GEMINI_API_KEY", "gemini-2.0-flash"),
    _ZeroConfigProvider(Provider.GROQ, "GROQ_API_KEY", "llama-3.1-8b-instant"),
    _ZeroConfigProvider(
        Provider.TOGETHER, "TOGETHER_API_KEY", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"
    ),
    _ZeroConfigProvider(
        Provider.FIREWORKS, "FIREWORKS_API_KEY", "accounts/fireworks/models/llama-v3p1-8b-instruct"
    ),
    _ZeroConfigProvider(Provider.OPENROUTER, "OPENROUTER_API_KEY", "openai/gpt-4o-mini"),
    _ZeroConfigProvider(Provider.OLLAMA, "OLLAMA_BASE_URL", "llama3.2"),
)
"""The zero-config providers in their default order, each with its variable and default model."""


def config_from_env(env: Mapping[str, str] | None = None) -> Config:
    """The zero-config mode: one route ``default`` over every provider with a key in ``env``.

    Targets keep the order of the variables above, the one ``LLM_PROVIDER`` names first;
    ``<PROVIDER>_MODEL`` (``GROQ_MODEL``, ...) overrides a default model; ``OLLAMA_BASE_URL``
    adds a local Ollama. Empty or placeholder keys (``your_openai_key_here``) count as absent.
    ``FAILOVER_KEY`` and ``FAILOVER_ADMIN_KEY``, when set, become the server's client key and
    admin key. Deployments are named after their provider.

    >>> config_from_env({"GROQ_API_KEY": "gsk-1", "OPENAI_API_KEY": "sk-1",
    ...                  "LLM_PROVIDER": "groq"}).routes["default"].targets
    ('groq', 'openai')
    """
    env = os.environ if env is None else env
    present = [p for p in _ZERO_CONFIG_PROVIDERS if not is_absent_key(env.get(p.variable, ""))]
    primary = env.get("LLM_PROVIDER", "").strip().lower()
    if primary:
        known = {p.provider.value: p for p in _ZERO_CONFIG_PROVIDERS}
        if primary not in known:
            raise ConfigError(
                "LLM_PROVIDER",
                f"unknown provider {primary!r}{did_you_mean(primary, known)}; "
                f"use one of: {', '.join(known)}",
            )
        if known[primary] not in present:
            raise ConfigError(
                "LLM_PROVIDER",
                f"names {primary!r} but {known[primary].variable} is not set; set it, or "
                "unset LLM_PROVIDER",
            )
        present.sort(key=lambda p: p.provider.value != primary)  # stable: the rest keep order
    if not present:
        variables = ", ".join(p.variable for p in _ZERO_CONFIG_PROVIDERS)
        raise ConfigError(
            "environment",
            f"no provider key found: set at least one of {variables} "
            "(or give a config file with --config)",
        )
    deployments = {p.provider.value: _deployment(p, env) for p in present}
    server: dict[str, Any] = {}
    if env.get("FAILOVER_KEY"):
        server["api_keys"] = [env["FAILOVER_KEY"]]
    if env.get("FAILOVER_ADMIN_KEY"):
        server["admin_key"] = env["FAILOVER_ADMIN_KEY"]
    data = {
        "server": server,
        "deployments": deployments,
        "routes": {ZERO_CONFIG_ROUTE: {"targets": list(deployments)}},
    }
    return validate_config(data, env=env, source="environment", base_dir=None, interpolate=False)


def _deployment(entry: _ZeroConfigProvider, env: Mapping[str, str]) -> dict[str, Any]:
    """The deployment of ``entry``'s provider, as the file would write it."""
    value = env[entry.variable].strip()
    model = env.get(f"{entry.provider.name}_MODEL", "").strip() or entry.model
    if entry.provider is Provider.OLLAMA:
        # Ollama's own variable names the server; its OpenAI-compatible API lives under /v1.
        base = value.rstrip("/")
        return {
            "provider": entry.provider.value,
            "model": model,
            "api_base": base if base.endswith("/v1") else f"{base}/v1",
        }
    return {"provider": entry.provider.value, "model": model, "api_key": value}
