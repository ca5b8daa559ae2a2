"""Config errors about URLs that may carry credentials (``api_base``, ``otlp_endpoint``).

A bad one is refused when the config is read, at its key path, with the URL shown masked (user
info and query values): the password or ``?key=`` in it is never printed, as no other config
error prints a secret; ``failover check`` says the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from failover.cli import main
from failover.config import config_from_dict
from tests.config.helpers import error_message, minimal_config

PASSWORD = "hunter2-Pw-9Xz3"
QUERY_KEY = "qk-Zq7Hq2Zp9Xw4"


@pytest.mark.parametrize(
    "base",
    [
        f"ftp://admin:{PASSWORD}@example.com/v1?api-key={QUERY_KEY}",
        f"http://admin:{PASSWORD}@/v1?key={QUERY_KEY}",  # no host: yarl refuses it
        f"https://example.com:99999/v1?key={QUERY_KEY}#{PASSWORD}",
        f"{PASSWORD}{QUERY_KEY}",  # anything pasted there, a key perhaps
    ],
)
def test_a_bad_api_base_is_a_config_error_without_its_secrets(base: str) -> None:
    """A bad api_base fails at its path when the config is read; its secrets are not shown."""
    data = minimal_config()
    data["deployments"]["mini"]["api_base"] = base
    message = error_message(data)
    assert message.startswith("deployments.mini.api_base: must be an http:// or https:// URL")
    for secret in (PASSWORD, QUERY_KEY, "sk-1"):
        assert secret not in message


def test_a_bad_api_base_names_the_url_masked() -> None:
    """The message still shows which URL it was, user info and query masked."""
    data = minimal_config()
    data["deployments"]["mini"]["api_base"] = f"ftp://admin:{PASSWORD}@example.com/v1?k={QUERY_KEY}"
    assert error_message(data) == (
        "deployments.mini.api_base: must be an http:// or https:// URL, "
        "got 'ftp://***@example.com/v1?k=***'"
    )


def test_a_bad_otlp_endpoint_is_a_config_error_without_its_secrets() -> None:
    """telemetry.otlp_endpoint is checked the same way, at its path."""
    data = minimal_config()
    data["telemetry"] = {"otlp_endpoint": f"grpc://u:{PASSWORD}@collector:4317?token={QUERY_KEY}"}
    message = error_message(data)
    assert message == (
        "telemetry.otlp_endpoint: must be an http:// or https:// URL, "
        "got 'grpc://***@collector:4317?token=***'"
    )


def test_good_urls_with_credentials_are_kept_as_written() -> None:
    """A valid URL keeps its credentials in the config: they are what the client sends."""
    data = minimal_config()
    base = f"https://admin:{PASSWORD}@example.com/v1?api-key={QUERY_KEY}"
    endpoint = f"https://u:{PASSWORD}@collector:4318/otel?token={QUERY_KEY}"
    data["deployments"]["mini"]["api_base"] = base
    data["telemetry"] = {"otlp_endpoint": endpoint}
    config = config_from_dict(data, env={})
    assert config.deployments["mini"].api_base == base
    assert config.telemetry.otlp_endpoint == endpoint


def test_failover_check_prints_a_bad_api_base_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``failover check`` on such a file says what is wrong, and prints neither secret."""
    data = minimal_config()
    data["deployments"]["mini"]["api_base"] = f"ftp://admin:{PASSWORD}@example.com/?key={QUERY_KEY}"
    path = tmp_path / "failover.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["check", "--config", str(path)])
    out = capsys.readouterr()
    assert code != 0
    printed = out.out + out.err
    assert "deployments.mini.api_base" in printed
    assert PASSWORD not in printed
    assert QUERY_KEY not in printed
