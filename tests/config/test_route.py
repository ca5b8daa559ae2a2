"""Routes (failover.config.route): targets that name deployments, hedging settings."""

from __future__ import annotations

from failover.config import config_from_dict
from tests.config.helpers import error_message, minimal_config


def test_unknown_deployment_in_targets() -> None:
    """A target naming no deployment is reported at its index."""
    data = minimal_config()
    data["routes"]["intent"] = {"targets": ["mini", "gpt5"]}
    assert error_message(data) == "routes.intent.targets[1]: unknown deployment 'gpt5'"


def test_unknown_deployment_suggests_a_close_name() -> None:
    """A near-miss target name gets a suggestion; a route name gets an explanation."""
    data = minimal_config()
    data["routes"]["typo"] = {"targets": ["minii"]}
    assert error_message(data).endswith("unknown deployment 'minii' (did you mean 'mini'?)")
    data["routes"]["typo"] = {"targets": ["r"]}
    assert error_message(data).endswith(
        "unknown deployment 'r' (it is a route; targets must be deployments)"
    )


def test_duplicate_targets() -> None:
    """A deployment listed twice in one route is an error."""
    assert error_message(minimal_config(targets=["mini", "mini"])) == (
        "routes.r.targets[1]: deployment 'mini' is listed twice"
    )


def test_hedge_after_not_below_deadline() -> None:
    """hedge_after must be less than the deadline."""
    assert error_message(minimal_config(hedge_after=6, deadline=5.5)) == (
        "routes.r.hedge_after: must be less than the deadline (5.5), got 6"
    )


def test_bad_hedge_after_value() -> None:
    """hedge_after takes a positive number or 'auto', in one plain message."""
    assert error_message(minimal_config(hedge_after="soon")) == (
        "routes.r.hedge_after: must be a number of seconds or 'auto'"
    )
    assert (
        error_message(minimal_config(hedge_after=0))
        == "routes.r.hedge_after: must be greater than 0 (or 'auto')"
    )


def test_hedge_bounds_need_auto() -> None:
    """hedge_bounds is only valid with hedge_after: auto, and must be two numbers."""
    assert error_message(minimal_config(hedge_after=1, hedge_bounds=[0.2, 10])) == (
        "routes.r.hedge_bounds: is only valid with hedge_after: auto"
    )
    assert config_from_dict(minimal_config(hedge_after="auto", hedge_bounds=[0.2, 10]), env={})
    assert "two numbers" in error_message(minimal_config(hedge_after="auto", hedge_bounds=[1]))
