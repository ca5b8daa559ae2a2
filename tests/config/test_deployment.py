"""Deployments (failover.config.deployment): providers, and keys that are not there."""

from __future__ import annotations

from failover.config import config_from_dict
from tests.config.helpers import error_message, minimal_config


def test_unset_api_key_variable_means_not_configured() -> None:
    """An unset ``${VAR}`` in a deployment's api_key leaves it not configured, not an error."""
    data = minimal_config()
    data["deployments"]["mini"]["api_key"] = "${OPENAI_API_KEY}"
    deployment = config_from_dict(data, env={}).deployments["mini"]
    assert deployment.api_key is None
    assert not deployment.configured
    assert deployment.not_configured_reason == "OPENAI_API_KEY not set"


def test_unset_api_key_variable_marks_even_keyless_providers() -> None:
    """A keyless provider whose api_key names an unset variable is not configured either."""
    data = {"deployments": {"local": {"provider": "ollama", "model": "m", "api_key": "${K}"}}}
    assert not config_from_dict(data, env={}).deployments["local"].configured
    data["deployments"]["local"].pop("api_key")
    assert config_from_dict(data, env={}).deployments["local"].configured


def test_placeholder_or_empty_api_key_means_not_configured() -> None:
    """A template placeholder or an empty key is no key at all."""
    data = minimal_config()
    for value, reason in (("your_openai_key_here", "placeholder"), ("", "empty")):
        data["deployments"]["mini"]["api_key"] = value
        deployment = config_from_dict(data, env={}).deployments["mini"]
        assert not deployment.configured
        assert reason in (deployment.not_configured_reason or "")


def test_unknown_provider_lists_valid_ones() -> None:
    """An unknown provider is named, with a suggestion and the valid list."""
    data = minimal_config()
    data["deployments"]["mini"]["provider"] = "openaii"
    message = error_message(data)
    assert message.startswith(
        "deployments.mini.provider: unknown provider 'openaii' (did you mean 'openai'?)"
    )
    assert "use one of: openai, anthropic, gemini, groq" in message
    assert "openai-compatible" in message


def test_openai_compatible_needs_api_base() -> None:
    """provider openai-compatible without api_base is an error at api_base."""
    data = {"deployments": {"vllm": {"provider": "openai-compatible", "model": "m"}}}
    assert (
        error_message(data)
        == "deployments.vllm.api_base: provider 'openai-compatible' needs an api_base"
    )
