"""The gateway-wide sections (failover.config.sections): server keys, rate limits, checks."""

from __future__ import annotations

from failover.config import config_from_dict
from tests.config.helpers import error_message


def test_single_server_key_without_brackets() -> None:
    """``api_keys: ${FAILOVER_KEY}`` without a list means that one key; empty means none."""
    config = config_from_dict({"server": {"api_keys": "${K}"}}, env={"K": "c1"})
    assert [key.get_secret_value() for key in config.server.api_keys] == ["c1"]
    assert config_from_dict({"server": {"api_keys": "${K:-}"}}, env={}).server.api_keys == ()


def test_bad_rate_limit_string() -> None:
    """A rate limit with an unknown unit explains the format."""
    data = {"server": {"rate_limits": {"default": "100/fortnight"}}}
    message = error_message(data)
    assert message.startswith("server.rate_limits.default: bad rate limit '100/fortnight'")
    assert "second, minute, hour, day" in message
    paths = {"server": {"rate_limits": {"paths": {"/v1/models": "5/minute", "/health": 5}}}}
    assert (
        error_message(paths)
        == "server.rate_limits.paths./health: must be a rate limit like '100/minute'"
    )


def test_rate_limit_path_must_be_absolute() -> None:
    """Per-path limits name absolute paths."""
    data = {"server": {"rate_limits": {"paths": {"health": "1/second"}}}}
    assert error_message(data) == "server.rate_limits.paths.health: a path must start with '/'"


def test_other_cross_field_checks() -> None:
    """Webhook without url, breaks that shrink, and a non-Redis state URL are named by path."""
    message = error_message(
        {
            "alerts": [{"kind": "webhook"}],
            "health": {"recovery_seconds": 100, "max_recovery_seconds": 10},
            "state": {"backend": "redis", "url": "http://x"},
        }
    )
    assert "alerts[0].url: a webhook alert needs a url" in message
    assert "health.max_recovery_seconds: must be at least recovery_seconds (100)" in message
    assert "state.url: must be a redis://, rediss:// or unix:// URL" in message
