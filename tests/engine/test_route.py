"""RoutePlan and HedgePolicy: a route's hedging read once from its config, in one place."""

from __future__ import annotations

import pytest

from failover.engine.route import (
    DEFAULT_HEDGE_BOUNDS,
    NO_HEDGING,
    HedgeMode,
    HedgePolicy,
    RoutePlan,
)

from .fakes import FakeProvider, route


def test_no_hedge_after_is_no_hedging() -> None:
    """A route without hedge_after runs sequentially: mode none, no delay, no bounds."""
    policy = HedgePolicy.of(route(["a"]))
    assert policy is NO_HEDGING
    assert (policy.mode, policy.delay, policy.bounds) == (HedgeMode.NONE, None, None)


def test_a_number_is_a_fixed_delay() -> None:
    """hedge_after: 1.5 is a fixed delay of 1.5 s, without bounds."""
    assert HedgePolicy.of(route(["a", "b"], hedge_after=1.5)) == HedgePolicy(HedgeMode.FIXED, 1.5)


def test_auto_has_bounds_and_a_cold_start_at_the_upper_bound() -> None:
    """hedge_after: auto: the route's bounds (else the defaults); cold start at the upper one."""
    default = HedgePolicy.of(route(["a", "b"], hedge_after="auto"))
    assert default == HedgePolicy(HedgeMode.AUTO, DEFAULT_HEDGE_BOUNDS[1], DEFAULT_HEDGE_BOUNDS)
    bounded = HedgePolicy.of(route(["a", "b"], hedge_after="auto", hedge_bounds=(0.5, 3.0)))
    assert bounded == HedgePolicy(HedgeMode.AUTO, 3.0, (0.5, 3.0))


@pytest.mark.parametrize(
    ("mode", "delay", "bounds"),
    [
        (HedgeMode.NONE, 1.0, None),
        (HedgeMode.FIXED, None, None),
        (HedgeMode.FIXED, 1.0, (0.2, 1.0)),
        (HedgeMode.AUTO, 1.0, None),
    ],
)
def test_an_inconsistent_policy_is_refused(
    mode: HedgeMode, delay: float | None, bounds: tuple[float, float] | None
) -> None:
    """A delay exactly when it hedges, bounds exactly when auto: anything else is a ValueError."""
    with pytest.raises(ValueError, match="hedge policy"):
        HedgePolicy(mode, delay, bounds)


def test_the_plan_holds_the_policy() -> None:
    """RoutePlan.build reads the policy once; the plan has no other hedge field."""
    a, b = FakeProvider("a", []), FakeProvider("b", [])
    config = route(["a", "b"], hedge_after="auto", hedge_bounds=(0.1, 2.0))
    plan = RoutePlan.build(config, {"a": a, "b": b}, {"a": a.deployment, "b": b.deployment})
    assert plan.hedge == HedgePolicy(HedgeMode.AUTO, 2.0, (0.1, 2.0))
    assert not {"hedge_after", "fixed_hedge", "hedge_bounds"} & set(RoutePlan.__slots__)
