"""Secrets (failover.config.secrets): no key in any repr, message or traceback."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from pydantic import ValidationError

from failover.config import DeploymentConfig, config_from_dict, load_config
from failover.errors import ConfigError
from tests.config.helpers import minimal_config, write_file

SECRET = "sk-live-0123456789abcdef"


def test_reprs_never_show_a_key() -> None:
    """repr, str and JSON of a config mask every key."""
    data = minimal_config()
    data["deployments"]["mini"]["api_key"] = "${OPENAI_API_KEY}"
    data["server"] = {"api_keys": [SECRET], "admin_key": SECRET}
    config = config_from_dict(data, env={"OPENAI_API_KEY": SECRET})
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.deployments)):
        assert SECRET not in text
    key = config.deployments["mini"].api_key
    assert key is not None
    assert key.get_secret_value() == SECRET


def full_error_text(error: BaseException) -> str:
    """The traceback and repr of ``error``, as a user could see them."""
    return "".join(traceback.format_exception(error)) + repr(error)


def test_config_errors_never_show_a_key() -> None:
    """Errors raised while keys are set (even misplaced ones) never contain them."""
    data = minimal_config()
    data["deployments"]["mini"]["api_key"] = "${OPENAI_API_KEY}"
    data["deployments"]["mini"]["provider"] = "${OPENAI_API_KEY}"  # a key where a word belongs
    data["server"] = {"api_keys": [SECRET, 42], "admin_key": ["x"], "host": "${OPENAI_API_KEY}"}
    data["store"] = {"url": f"mysql://user:{SECRET}@db/x"}
    data["alerts"] = [{"kind": "webhook", "url": 5}]
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, env={"OPENAI_API_KEY": SECRET})
    text = full_error_text(info.value)
    assert "deployments.mini.provider: unknown value" in text
    assert "store.url: unsupported store url 'mysql://...'" in text
    assert SECRET not in text
    assert "0123456789" not in text


def test_yaml_error_does_not_echo_the_file(tmp_path: Path) -> None:
    """A YAML error names the place, never the line's text (which may hold a literal key)."""
    path = write_file(tmp_path, f"deployments:\n  a: {{api_key: {SECRET}, model: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert SECRET not in full_error_text(info.value)


def test_direct_construction_errors_hide_input() -> None:
    """A ValidationError from building a model directly does not print the key given."""
    with pytest.raises(ValidationError) as info:
        DeploymentConfig(provider="nope", model="m", api_key=SECRET)
    assert SECRET not in str(info.value)
