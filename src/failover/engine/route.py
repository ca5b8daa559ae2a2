"""A route prepared once for the hot path: its targets resolved, its hedge policy, its budget.

Every request of a route reuses the same :class:`RoutePlan`; the engine builds one per route name
the first time it sees it (and again if the route's config object changes). Its
:class:`HedgePolicy` is the one reading of ``hedge_after`` and ``hedge_bounds``: the runners, the
adaptive delays and the alert rules all take it from :meth:`HedgePolicy.of`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from failover.config import DeploymentConfig, RouteConfig
from failover.engine.budget import RetryBudget
from failover.errors import ConfigError
from failover.providers.base import ChatProvider

__all__ = ["DEFAULT_HEDGE_BOUNDS", "NO_HEDGING", "HedgeMode", "HedgePolicy", "RoutePlan", "Target"]

DEFAULT_HEDGE_BOUNDS = (0.2, 10.0)
"""The seconds ``hedge_after: auto`` stays within when the route gives no ``hedge_bounds``."""


class HedgeMode(enum.StrEnum):
    """How a route's hedge delay is chosen."""

    NONE = "none"  # no hedge_after: a sequential route
    FIXED = "fixed"  # hedge_after: <seconds>
    AUTO = "auto"  # hedge_after: auto, the deployment's recent p95 within bounds


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When a route starts its next target beside a late one (rule 3), read once from its config.

    ``delay`` is the seconds to wait: the configured number when ``FIXED``; with ``AUTO`` the
    delay of a cold start (the upper bound: :mod:`~failover.engine.adaptive` says why), the
    adaptive one staying within ``bounds``; None when ``NONE`` (so ``delay is None`` is the one
    test for a sequential route).

    >>> from failover.config import RouteConfig
    >>> HedgePolicy.of(RouteConfig(name="r", targets=("a",), hedge_after="auto"))
    HedgePolicy(mode=<HedgeMode.AUTO: 'auto'>, delay=10.0, bounds=(0.2, 10.0))
    >>> HedgePolicy.of(RouteConfig(name="r", targets=("a",), hedge_after=1.5)).delay
    1.5
    """

    mode: HedgeMode
    delay: float | None = None
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (self.delay is None) is not (self.mode is HedgeMode.NONE):
            raise ValueError(f"a hedge policy {self.mode} has a delay exactly when it hedges")
        if (self.bounds is None) is (self.mode is HedgeMode.AUTO):
            raise ValueError(f"a hedge policy {self.mode} has bounds exactly when it is auto")

    @classmethod
    def of(cls, route: RouteConfig) -> HedgePolicy:
        """The policy ``route``'s ``hedge_after`` and ``hedge_bounds`` say."""
        hedge_after = route.hedge_after
        if hedge_after is None:
            return NO_HEDGING
        if hedge_after == "auto":
            low, high = route.hedge_bounds or DEFAULT_HEDGE_BOUNDS
            return cls(HedgeMode.AUTO, high, (low, high))
        return cls(HedgeMode.FIXED, float(hedge_after))


NO_HEDGING = HedgePolicy(HedgeMode.NONE)
"""The policy of a route without ``hedge_after``: it runs its targets one by one."""


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
    are left out: they are never called), in route order; ``hedge`` is its
    :class:`HedgePolicy` (``hedge.delay is None`` for a sequential route).
    """

    config: RouteConfig
    name: str
    names: tuple[str, ...]
    targets: Mapping[str, Target]
    hedge: HedgePolicy
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
            hedge=HedgePolicy.of(route),
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
