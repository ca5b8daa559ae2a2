"""Routes: the names clients ask for, their ordered targets and the policy that runs them.

>>> RouteConfig(targets=("groq-llama", "openai-mini"), hedge_after=1.5).hedged
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from failover.config.base import (
    FrozenModel,
    KeyPath,
    NonNegativeSeconds,
    PositiveSeconds,
    Problems,
    did_you_mean,
)


class RetryConfig(FrozenModel):
    """Backoff between retries on one deployment: ``backoff * 2**n``, capped, with jitter."""

    backoff: NonNegativeSeconds = 0.25
    max_backoff: NonNegativeSeconds = 4.0
    jitter: bool = True

    @model_validator(mode="after")
    def _cap_above_base(self) -> Self:
        if self.max_backoff < self.backoff:
            raise Problems.at("max_backoff", f"must be at least backoff ({self.backoff:g})")
        return self


class RetryBudgetConfig(FrozenModel):
    """Extra attempts (retries and hedges) allowed: ``ratio`` of requests, at least a floor."""

    ratio: float = Field(default=0.2, ge=0)
    min_per_second: float = Field(default=10.0, ge=0)
    window_seconds: PositiveSeconds = 10.0


_HEDGE_AFTER_HINT = "must be a number of seconds or 'auto'"


class RouteConfig(FrozenModel):
    """A name clients ask for: ordered targets and the policy that runs them."""

    name: str = ""
    targets: tuple[str, ...] = Field(min_length=1)
    hedge_after: float | Literal["auto"] | None = None
    hedge_bounds: tuple[PositiveSeconds, PositiveSeconds] | None = None
    deadline: PositiveSeconds = 60.0
    default_response: str | None = None
    finish_losers: NonNegativeSeconds = 0.0
    retry: RetryConfig = Field(default_factory=RetryConfig)
    retry_budget: RetryBudgetConfig = Field(default_factory=RetryBudgetConfig)

    @field_validator("hedge_after", mode="before")
    @classmethod
    def _hedge_after(cls, value: Any) -> Any:
        # Checked here in full so that a bad value gives one plain message, not one per member
        # of the float | 'auto' union.
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(_HEDGE_AFTER_HINT)
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(_HEDGE_AFTER_HINT) from None
        if not 0 < seconds < float("inf"):
            raise ValueError("must be greater than 0 (or 'auto')")
        return seconds

    @field_validator("hedge_bounds", mode="before")
    @classmethod
    def _two_bounds(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 2:
            raise ValueError("must be [low, high]: two numbers of seconds")
        return value

    @model_validator(mode="after")
    def _hedge_consistent(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if isinstance(self.hedge_after, float) and self.hedge_after >= self.deadline:
            problems.append(
                (
                    ("hedge_after",),
                    f"must be less than the deadline ({self.deadline:g}), got {self.hedge_after:g}",
                )
            )
        if self.hedge_bounds is not None:
            if self.hedge_after != "auto":
                problems.append((("hedge_bounds",), "is only valid with hedge_after: auto"))
            low, high = self.hedge_bounds
            if low > high:
                problems.append((("hedge_bounds",), "must be [low, high] with low <= high"))
        if problems:
            raise Problems(problems)
        return self

    @property
    def hedged(self) -> bool:
        """True when ``hedge_after`` is set: targets race instead of running one by one."""
        return self.hedge_after is not None


def target_problems(
    deployments: Iterable[object], routes: Mapping[Any, Any]
) -> list[tuple[KeyPath, str]]:
    """Route targets that name no deployment, or a deployment twice, each at its key path.

    Works on validated routes and on raw dicts alike, so that the loader can report these together
    with field errors instead of only after them.

    >>> target_problems(["mini"], {"r": {"targets": ["mini", "minii"]}})
    [(('routes', 'r', 'targets', 1), "unknown deployment 'minii' (did you mean 'mini'?)")]
    """
    known = [str(name) for name in deployments]
    problems: list[tuple[KeyPath, str]] = []
    for route_name, route in routes.items():
        targets = route.targets if isinstance(route, RouteConfig) else None
        if isinstance(route, Mapping):
            targets = route.get("targets")
        if not isinstance(targets, list | tuple):
            continue
        seen: set[str] = set()
        for index, target in enumerate(targets):
            if not isinstance(target, str):
                continue
            path: KeyPath = ("routes", str(route_name), "targets", index)
            if target in seen:
                problems.append((path, f"deployment {target!r} is listed twice"))
            elif target not in known:
                message = f"unknown deployment {target!r}"
                if target in routes:
                    message += " (it is a route; targets must be deployments)"
                else:
                    message += did_you_mean(target, known)
                problems.append((path, message))
            seen.add(target)
    return problems


def kind_problems(
    deployments: Mapping[str, Any], routes: Mapping[str, RouteConfig]
) -> list[tuple[KeyPath, str]]:
    """Routes that mix chat and embeddings deployments, embeddings routes whose targets' vectors
    are of different spaces (a fallback would answer vectors that cannot be compared with the
    primary's), and embeddings routes with a default response (no vector can stand in for one).
    """
    problems: list[tuple[KeyPath, str]] = []
    for name, route in routes.items():
        targets = [deployments[t] for t in route.targets if t in deployments]
        kinds = sorted({t.kind for t in targets})
        if len(kinds) > 1:
            listed = "; ".join(
                f"{kind}: {', '.join(t.name for t in targets if t.kind == kind)}" for kind in kinds
            )
            problems.append((("routes", name, "targets"), f"mixes kinds of deployment ({listed})"))
            continue
        if kinds != ["embeddings"]:
            continue
        spaces = sorted({t.vector_space for t in targets})
        if len(spaces) > 1:
            listed = "; ".join(
                f"{space}: {', '.join(t.name for t in targets if t.vector_space == space)}"
                for space in spaces
            )
            problems.append(
                (
                    ("routes", name, "targets"),
                    f"embeddings of different spaces ({listed}): set the same 'space' on "
                    "deployments whose vectors are interchangeable",
                )
            )
        if route.default_response is not None:
            problems.append(
                (("routes", name, "default_response"), "an embeddings route has no default")
            )
    return problems
