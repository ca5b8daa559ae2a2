"""The zero-config mode (failover.config.zero): one route from the provider keys present."""

from __future__ import annotations

import pytest

from failover.config import config_from_env
from failover.errors import ConfigError


def test_zero_config_orders_targets_by_provider_list() -> None:
    """Without LLM_PROVIDER the targets follow the documented provider order."""
    env = {"GROQ_API_KEY": "g", "OPENAI_API_KEY": "o", "GEMINI_API_KEY": "gm"}
    config = config_from_env(env)
    assert list(config.routes) == ["default"]
    assert config.routes["default"].targets == ("openai", "gemini", "groq")
    assert config.deployments["openai"].model == "gpt-4o-mini"
    assert config.deployments["gemini"].model == "gemini-2.0-flash"
    assert config.deployments["groq"].model == "llama-3.1-8b-instant"
    assert all(d.configured for d in config.deployments.values())


def test_zero_config_llm_provider_goes_first() -> None:
    """LLM_PROVIDER names the primary; the others keep their order behind it."""
    env = {
        "OPENAI_API_KEY": "o",
        "ANTHROPIC_API_KEY": "a",
        "TOGETHER_API_KEY": "t",
        "LLM_PROVIDER": "Together",
    }
    assert config_from_env(env).routes["default"].targets == ("together", "openai", "anthropic")


def test_zero_config_model_override_and_placeholders() -> None:
    """``<PROVIDER>_MODEL`` overrides the model; placeholder and empty keys count as absent."""
    env = {
        "GROQ_API_KEY": "g",
        "GROQ_MODEL": "llama3-8b-8192",
        "OPENAI_API_KEY": "your_openai_key_here",
        "ANTHROPIC_API_KEY": "",
        "FIREWORKS_API_KEY": "your_actual_fireworks_api_key",
    }
    config = config_from_env(env)
    assert config.routes["default"].targets == ("groq",)
    assert config.deployments["groq"].model == "llama3-8b-8192"


def test_zero_config_ollama_base_url() -> None:
    """OLLAMA_BASE_URL adds a keyless Ollama deployment on its OpenAI-compatible ``/v1``."""
    config = config_from_env({"OLLAMA_BASE_URL": "http://localhost:11434/"})
    ollama = config.deployments["ollama"]
    assert (ollama.base_url, ollama.model, ollama.configured) == (
        "http://localhost:11434/v1",
        "llama3.2",
        True,
    )


def test_zero_config_without_any_key_says_what_to_set() -> None:
    """No provider key at all: the error lists the variables to set."""
    with pytest.raises(ConfigError) as info:
        config_from_env({"OPENAI_API_KEY": "your_key"})
    message = str(info.value)
    assert message.startswith("environment: no provider key found")
    assert "OPENAI_API_KEY" in message
    assert "OLLAMA_BASE_URL" in message


def test_zero_config_rejects_unknown_or_keyless_primary() -> None:
    """LLM_PROVIDER must name a known provider that has a key."""
    with pytest.raises(ConfigError, match=r"unknown provider 'groqq' \(did you mean 'groq'\?\)"):
        config_from_env({"LLM_PROVIDER": "groqq", "GROQ_API_KEY": "g"})
    with pytest.raises(ConfigError, match="names 'groq' but GROQ_API_KEY is not set"):
        config_from_env({"LLM_PROVIDER": "groq", "OPENAI_API_KEY": "o"})


def test_zero_config_reads_the_gateway_keys() -> None:
    """FAILOVER_KEY and FAILOVER_ADMIN_KEY become the server's client and admin keys."""
    config = config_from_env(
        {"OPENAI_API_KEY": "o", "FAILOVER_KEY": "c", "FAILOVER_ADMIN_KEY": "a"}
    )
    assert [k.get_secret_value() for k in config.server.api_keys] == ["c"]
    assert config.server.admin_key is not None
    assert config.server.admin_key.get_secret_value() == "a"
