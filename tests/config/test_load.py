"""Loading (failover.config.load): YAML files and mappings, the .env beside the file,
relative paths, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.config import Provider, RateLimit, config_from_dict, load_config
from failover.errors import ConfigError
from tests.config.helpers import DOTENV, SPEC_ENV, SPEC_EXAMPLE, minimal_config, write_file


def test_spec_example_parses_with_its_values(tmp_path: Path) -> None:
    """The full example of SPEC.md loads, every section as written."""
    config = load_config(write_file(tmp_path, SPEC_EXAMPLE), env=SPEC_ENV)
    assert config.server.port == 4000
    assert [key.get_secret_value() for key in config.server.api_keys] == ["client-key-1"]
    assert config.server.admin_key is None  # ${FAILOVER_ADMIN_KEY:-} gives "", which means none
    assert config.server.rate_limits is not None
    assert config.server.rate_limits.default == RateLimit(count=100, per_seconds=60)
    assert str(config.server.rate_limits.paths["/health"]) == "300/minute"
    assert config.state.backend == "memory"
    assert [a.kind for a in config.alerts] == ["log", "webhook"]
    assert config.alerts[1].min_level == "HIGH"
    assert config.telemetry.otlp_endpoint == "http://127.0.0.1:4318"
    assert config.health.failure_threshold == 5
    groq = config.deployments["groq-llama"]
    assert (groq.name, groq.provider, groq.model) == ("groq-llama", Provider.GROQ, "llama3-8b-8192")
    assert groq.api_key is not None
    assert groq.api_key.get_secret_value() == "gsk-groq"
    assert (groq.price.input, groq.price.output) == (0.05, 0.08)
    assert groq.configured
    route = config.routes["intent"]
    assert route.name == "intent"
    assert route.targets == ("groq-llama", "openai-mini")
    assert (route.hedge_after, route.deadline, route.finish_losers) == (1.5, 5.5, 4.0)
    assert route.default_response == "INTENT_FALLBACK"
    assert route.hedged
    assert (route.retry.backoff, route.retry.max_backoff, route.retry_budget.ratio) == (
        0.25,
        4,
        0.2,
    )


def test_defaults_for_what_is_left_out(tmp_path: Path) -> None:
    """Left-out keys take SPEC's defaults: timeout 30, max_retries 1, deadline 60, sequential."""
    text = (
        "deployments:\n  m: {provider: openai, model: gpt-4o-mini}\nroutes:\n  r: {targets: [m]}\n"
    )
    config = load_config(write_file(tmp_path, text), env={})
    deployment, route = config.deployments["m"], config.routes["r"]
    assert (deployment.timeout, deployment.max_retries, deployment.verify_tls) == (30, 1, True)
    assert deployment.base_url == "https://api.openai.com/v1"
    assert (route.deadline, route.finish_losers, route.hedge_after) == (60, 0, None)
    assert not route.hedged
    assert config.server.rate_limits is None
    assert config.state.backend == "memory"
    assert config.store.url == f"sqlite:///{tmp_path / 'failover.db'}"


def test_relative_sqlite_path_is_taken_from_the_config_directory(tmp_path: Path) -> None:
    """A relative SQLite path lands beside the config file; an absolute one is kept."""
    relative = load_config(write_file(tmp_path, "store: {url: 'sqlite:///logs/req.db'}\n"), env={})
    assert relative.store.url == f"sqlite:///{tmp_path / 'logs' / 'req.db'}"
    absolute = config_from_dict({"store": {"url": "sqlite:////var/x.db"}}, env={})
    assert absolute.store.url == "sqlite:////var/x.db"


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``env=``, variables come from ``os.environ``."""
    monkeypatch.setenv("FAILOVER_TEST_TEAM", "platform")
    config = config_from_dict(minimal_config(default_response="${FAILOVER_TEST_TEAM}"))
    assert config.routes["r"].default_response == "platform"


def test_dotenv_beside_the_file_is_loaded_and_the_real_environment_wins(tmp_path: Path) -> None:
    """The ``.env`` beside the config feeds interpolation; variables already set win."""
    write_file(tmp_path, DOTENV, ".env")
    path = write_file(tmp_path, SPEC_EXAMPLE)
    config = load_config(path, env={"OPENAI_API_KEY": "sk-real"})
    groq, mini = config.deployments["groq-llama"], config.deployments["openai-mini"]
    assert groq.api_key is not None
    assert groq.api_key.get_secret_value() == "gsk-from-dotenv"
    assert mini.api_key is not None
    assert mini.api_key.get_secret_value() == "sk-real"
    assert config.server.api_keys[0].get_secret_value() == "lit#eral"


def test_every_problem_is_reported_at_once() -> None:
    """Field errors and cross-reference errors come together in one ConfigError."""
    data = minimal_config(targets=["mini", "nope"], deadline=-5)
    data["deployments"]["mini"]["timeout"] = 0
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, env={})
    assert info.value.path == "config"
    assert str(info.value).splitlines() == [
        "config: 3 problems:",
        "  deployments.mini.timeout: must be greater than 0, got 0",
        "  routes.r.deadline: must be greater than 0, got -5",
        "  routes.r.targets[1]: unknown deployment 'nope'",
    ]


def test_multiple_problems_in_a_file_are_listed_under_its_name(tmp_path: Path) -> None:
    """From a file, the error with several problems is headed by the file's path."""
    path = write_file(tmp_path, "server: {port: -1}\nhealth: {failure_threshold: 0}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: 2 problems:\n  server.port: must be at least 0")


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    """Broken YAML is reported with the file, line and column."""
    path = write_file(tmp_path, "server:\n  port: 4000\n  host: [127.0.0.1\nroutes: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line 4, column 7")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    """A key written twice in one mapping is an error, not a silent override."""
    text = "deployments:\n  a: {provider: openai, model: m}\n  a: {provider: groq, model: m}\n"
    with pytest.raises(ConfigError, match=r"line 3, column 3: key 'a' is written twice"):
        load_config(write_file(tmp_path, text), env={})


def test_yaml_anchors_may_be_overridden(tmp_path: Path) -> None:
    """A key merged from an anchor (``<<: *base``) may be overridden without a duplicate error."""
    text = (
        "deployments:\n"
        "  a: &base {provider: openai, model: m, timeout: 10}\n"
        "  b:\n    <<: *base\n    timeout: 20\n"
    )
    config = load_config(write_file(tmp_path, text), env={})
    assert (config.deployments["a"].timeout, config.deployments["b"].timeout) == (10, 20)


def test_missing_file(tmp_path: Path) -> None:
    """A config path that does not exist gives a clear error."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: config file not found"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A list or an empty file at the top level is refused with a clear message."""
    with pytest.raises(ConfigError, match=r"top level must be a mapping .* got a list"):
        load_config(write_file(tmp_path, "- a\n- b\n"), env={})
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(write_file(tmp_path, "# nothing\n", "empty.yaml"), env={})
