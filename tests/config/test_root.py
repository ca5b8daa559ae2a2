"""The root model (failover.config.root): names from keys, frozen, cross-checks, with_server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from failover.config import Config, DeploymentConfig, Provider, RouteConfig, config_from_dict
from failover.errors import ConfigError
from tests.config.helpers import error_message, minimal_config


def test_names_are_injected_from_keys() -> None:
    """Each deployment and route gets its dict key as ``name``."""
    config = config_from_dict(minimal_config(), env={})
    assert config.deployments["mini"].name == "mini"
    assert config.routes["r"].name == "r"


def test_names_are_injected_into_model_instances() -> None:
    """Models given directly (``Gateway.from_dict`` with objects) are named after their key."""
    deployment = DeploymentConfig(provider=Provider.OPENAI, model="m", api_key=None)
    config = Config(deployments={"d": deployment}, routes={"r": RouteConfig(targets=("d",))})
    assert config.deployments["d"].name == "d"
    assert config.routes["r"].name == "r"
    assert config.deployments["d"].not_configured_reason == "no api_key"


def test_a_name_that_differs_from_its_key_is_an_error() -> None:
    """An explicit ``name`` must match its key."""
    data = minimal_config()
    data["deployments"]["mini"]["name"] = "other"
    assert (
        error_message(data) == "deployments.mini.name: must match its key 'mini' (or be left out)"
    )


def test_config_is_frozen() -> None:
    """No field of a loaded config can be reassigned."""
    config = config_from_dict(minimal_config(), env={})
    with pytest.raises(ValidationError):
        config.routes["r"].deadline = 3  # type: ignore[misc]


def test_route_may_share_a_deployment_name() -> None:
    """A route named like a deployment is allowed (the route wins for clients)."""
    data = minimal_config()
    data["routes"] = {"mini": {"targets": ["mini"]}}
    config = config_from_dict(data, env={})
    assert config.routes["mini"].targets == ("mini",)


def test_open_gateway_only_on_loopback() -> None:
    """No api_keys on a public host is refused unless allow_open; with_server checks again."""
    message = error_message({"server": {"host": "0.0.0.0"}})
    assert message.startswith("server.host: no api_keys")
    assert config_from_dict({"server": {"host": "0.0.0.0", "allow_open": True}}, env={})
    config = config_from_dict({}, env={})
    assert config.with_server(port=5000).server.port == 5000
    with pytest.raises(ConfigError, match=r"server\.host: no api_keys"):
        config.with_server(host="0.0.0.0")
