"""A route prepared once for the hot path: its targets resolved, its hedge delay, its budget.

Every request of a route reuses the same :class:`RoutePlan`; the engine builds one per route name
the first time it sees it (and again if the route's config object changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from failover.config import DeploymentConfig, RouteConfig
from failover.engine.budget import RetryBudget
from failover.errors import ConfigError
from failover.providers.base import ChatProvider

__all__ = ["DEFAULT_HEDGE_BOUNDS", "RoutePlan", "Target"]

DEFAULT_HEDGE_BOUNDS = (0.2, 10.0)
"""The seconds ``hedge_after: auto`` stays within when the route gives no ``hedge_bounds``."""


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment as a route uses it; ``position`` is its index in the route's targets."""

    name: str
    position: int
    provider: ChatProvider
    timeout: float
    max_retries: int


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What the engine needs of a route, computed once.

    ``names`` are the route's targets that may be called (deployments that are not configured
    are left out: they are never called), in route order; ``hedge_after`` is None for a
    sequential route. ``fixed_hedge`` tells whether it is the configured number; with
    ``hedge_after: auto``, ``hedge_bounds`` holds the bounds the adaptive delay stays within
    (:mod:`~failover.engine.adaptive`) and ``hedge_after`` the delay of a cold start (the upper
    bound), so that ``hedge_after is None`` still means sequential.
    """

    config: RouteConfig
    name: str
    names: tuple[str, ...]
    targets: Mapping[str, Target]
    hedge_after: float | None
    fixed_hedge: bool
    hedge_bounds: tuple[float, float] | None
    budget: RetryBudget

    @classmethod
    def build(
        cls,
        route: RouteConfig,
        providers: Mapping[str, ChatProvider],
        deployments: Mapping[str, DeploymentConfig],
    ) -> RoutePlan:
        """Resolve ``route``'s targets; ConfigError naming the target that cannot be resolved."""
        targets: dict[str, Target] = {}
        for position, name in enumerate(route.targets):
            path = f"routes.{route.name}.targets[{position}]"
            deployment = deployments.get(name)
            if deployment is None:
                raise ConfigError(path, f"unknown deployment {name!r}")
            if not deployment.configured:
                continue
            provider = providers.get(name)
            if provider is None:
                raise ConfigError(path, f"deployment {name!r} has no provider adapter")
            targets.setdefault(
                name,
                Target(name, position, provider, deployment.timeout, deployment.max_retries),
            )
        return cls(
            config=route,
            name=route.name,
            names=tuple(targets),
            targets=targets,
            hedge_after=_hedge_delay(route),
            fixed_hedge=isinstance(route.hedge_after, float),
            hedge_bounds=_auto_bounds(route),
            budget=RetryBudget.from_config(route.retry_budget),
        )

    @property
    def deadline(self) -> float:
        return self.config.deadline

    @property
    def finish_losers(self) -> float:
        return self.config.finish_losers

    @property
    def default_response(self) -> str | None:
        return self.config.default_response


def _auto_bounds(route: RouteConfig) -> tuple[float, float] | None:
    if route.hedge_after != "auto":
        return None
    return route.hedge_bounds or DEFAULT_HEDGE_BOUNDS


def _hedge_delay(route: RouteConfig) -> float | None:
    if route.hedge_after is None:
        return None
    if route.hedge_after == "auto":
        # The delay is adaptive (engine/adaptive.py); this is its cold start: the upper bound.
        _low, high = route.hedge_bounds or DEFAULT_HEDGE_BOUNDS
        return high
    return float(route.hedge_after)
