"""The environment (failover.config.env): ${VAR} interpolation and .env files."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.config import config_from_dict, load_config, read_dotenv
from failover.errors import ConfigError
from tests.config.helpers import DOTENV, error_message, minimal_config, write_file


def test_env_variables_are_interpolated_everywhere() -> None:
    """``${VAR}`` is replaced in any string value, including inside longer strings and lists."""
    data = minimal_config(default_response="sorry from ${TEAM}")
    data["server"] = {"api_keys": ["${K1}", "${K2}"]}
    config = config_from_dict(data, env={"TEAM": "ops", "K1": "a1", "K2": "b2"})
    assert config.routes["r"].default_response == "sorry from ops"
    assert [k.get_secret_value() for k in config.server.api_keys] == ["a1", "b2"]


def test_defaults_keep_yaml_types_sensible(tmp_path: Path) -> None:
    """``${VAR:-default}`` values validate as int, bool and float; the environment overrides."""
    text = (
        "server: {port: '${PORT:-4000}', allow_open: '${OPEN:-false}'}\n"
        "deployments: {m: {provider: openai, model: m, timeout: '${T:-12.5}'}}\n"
        "routes: {r: {targets: [m], hedge_after: '${HEDGE:-auto}'}}\n"
    )
    path = write_file(tmp_path, text)
    config = load_config(path, env={})
    assert (config.server.port, config.server.allow_open) == (4000, False)
    assert config.deployments["m"].timeout == 12.5
    assert config.routes["r"].hedge_after == "auto"
    config = load_config(path, env={"PORT": "8080", "OPEN": "true", "HEDGE": "0.5"})
    assert (config.server.port, config.server.allow_open) == (8080, True)
    assert config.routes["r"].hedge_after == 0.5


def test_unquoted_default_in_yaml_validates_as_int(tmp_path: Path) -> None:
    """``port: ${PORT:-4000}`` written bare in YAML (a plain string) validates as the int 4000."""
    config = load_config(write_file(tmp_path, "server:\n  port: ${PORT:-4000}\n"), env={})
    assert config.server.port == 4000


def test_default_applies_to_empty_variable_and_may_nest() -> None:
    """``:-`` also covers a variable set to ""; a default may itself hold a ``${...}``."""
    data = minimal_config(default_response="${EMPTY:-${OTHER:-fallback}}")
    config = config_from_dict(data, env={"EMPTY": ""})
    assert config.routes["r"].default_response == "fallback"
    config = config_from_dict(data, env={"EMPTY": "", "OTHER": "x"})
    assert config.routes["r"].default_response == "x"


def test_double_dollar_escapes_a_reference() -> None:
    """``$${`` writes a literal ``${``."""
    config = config_from_dict(
        minimal_config(default_response="cost: $${PRICE}"), env={"PRICE": "1"}
    )
    assert config.routes["r"].default_response == "cost: ${PRICE}"


def test_unset_variable_is_an_error_naming_its_path() -> None:
    """An unset ``${VAR}`` outside an api_key is an error at its key path."""
    data = minimal_config()
    data["deployments"]["mini"]["api_base"] = "${LOCAL_URL}"
    message = error_message(data)
    assert message.startswith("deployments.mini.api_base: LOCAL_URL is not set")


def test_unset_server_key_is_an_error() -> None:
    """``server.api_keys`` is not exempt: an unset variable there stops the start."""
    data = minimal_config()
    data["server"] = {"api_keys": ["${FAILOVER_KEY}"]}
    assert error_message(data).startswith("server.api_keys[0]: FAILOVER_KEY is not set")


def test_bad_reference_is_an_error() -> None:
    """A ``${`` that is not closed, or names no variable, is an error at its path."""
    assert "is not closed" in error_message(minimal_config(default_response="${OOPS"))
    assert "bad variable reference '${1X}'" in error_message(
        minimal_config(default_response="${1X}")
    )


def test_read_dotenv_syntax(tmp_path: Path) -> None:
    """Comments, ``export``, both quotes, inline comments and escapes are understood."""
    values = read_dotenv(write_file(tmp_path, DOTENV, ".env"))
    assert values == {
        "GROQ_API_KEY": "gsk-from-dotenv",
        "OPENAI_API_KEY": "sk-from-dotenv",
        "FAILOVER_KEY": "lit#eral",
        "TEAM": "ops",
        "MULTI": "a\nb",
        "EMPTY": "",
    }
    assert read_dotenv(tmp_path / "absent.env") == {}


def test_bad_dotenv_line_names_the_line_not_its_content(tmp_path: Path) -> None:
    """A malformed ``.env`` line is reported by number, without echoing it."""
    path = write_file(tmp_path, "GOOD=1\nsk-secret-without-equals\n", ".env")
    with pytest.raises(ConfigError) as info:
        read_dotenv(path)
    assert str(info.value) == f"{path}: line 2: expected KEY=VALUE"
    write_file(tmp_path, 'KEY="unterminated\n', ".env")
    with pytest.raises(ConfigError, match="line 1 \\(KEY\\): the quote is not closed"):
        read_dotenv(path)
