"""Problems in plain words (failover.config.report): paths, suggestions, no pydantic jargon."""

from __future__ import annotations

from tests.config.helpers import error_message, minimal_config


def test_unknown_key_suggests_the_closest() -> None:
    """An unknown key is named, with the closest valid key when one is close."""
    data = minimal_config()
    data["deployments"]["mini"]["timeoutt"] = 10
    assert (
        error_message(data) == "deployments.mini: unknown key 'timeoutt' (did you mean 'timeout'?)"
    )
    assert (
        error_message({"deploymets": {}})
        == "unknown key 'deploymets' (did you mean 'deployments'?)"
    )
    assert error_message({"zzz": 1}) == "unknown key 'zzz'"


def test_negative_timeout() -> None:
    """A negative timeout is refused with its path and value."""
    data = minimal_config()
    data["deployments"]["mini"]["timeout"] = -1
    assert error_message(data) == "deployments.mini.timeout: must be greater than 0, got -1"


def test_wrong_types_in_plain_words() -> None:
    """Wrong types say what was expected and what was given, without pydantic's jargon."""
    data = minimal_config(deadline=[1])
    data["server"] = {"port": "http"}
    data["deployments"]["mini"]["model"] = 3.5
    message = error_message(data)
    assert "server.port: must be a whole number, got a string" in message
    assert "deployments.mini.model: must be a string, got a number; quote it" in message
    assert "routes.r.deadline: must be a number, got a list" in message
    assert "Input should" not in message
    assert error_message({"routes": ["r"]}) == "routes: must be a mapping (key: value), got a list"


def test_missing_required_keys() -> None:
    """A missing required key is named by its path."""
    data = {"deployments": {"d": {"provider": "openai"}}, "routes": {"r": {}}}
    message = error_message(data)
    assert "deployments.d.model: is required" in message
    assert "routes.r.targets: is required" in message
