"""The root model: :class:`Config`, every section of the file, checked across sections.

>>> config = Config(deployments={"mini": DeploymentConfig(provider="openai", model="m")},
...                 routes={"chat": RouteConfig(targets=("mini",))})
>>> config.routes["chat"].name, config.deployments["mini"].configured
('chat', False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator

from failover.config.base import FrozenModel, KeyPath, Problems
from failover.config.deployment import DeploymentConfig
from failover.config.report import config_error, validation_problems
from failover.config.route import RouteConfig, kind_problems, target_problems
from failover.config.sections import (
    AlertConfig,
    HealthConfig,
    ServerConfig,
    StateConfig,
    StoreConfig,
    TelemetryConfig,
)


class Config(FrozenModel):
    """The whole gateway configuration.

    Build it with :func:`load_config`, :func:`config_from_dict` or :func:`config_from_env`.
    ``deployments`` and ``routes`` keep the file's order; each item's ``name`` is its key.
    """

    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    alerts: tuple[AlertConfig, ...] = (AlertConfig(kind="log"),)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    deployments: Mapping[str, DeploymentConfig] = Field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inject_names(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for section in ("deployments", "routes"):
            items = data.get(section)
            if isinstance(items, Mapping):
                data[section] = {key: _named(str(key), item) for key, item in items.items()}
        return data

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        for section, items in (("deployments", self.deployments), ("routes", self.routes)):
            for key, item in items.items():
                if item.name != key:
                    problems.append(
                        ((section, key, "name"), f"must match its key {key!r} (or be left out)")
                    )
        problems += target_problems(self.deployments, self.routes)
        problems += kind_problems(self.deployments, self.routes)
        if problems:
            raise Problems(problems)
        return self

    def with_server(self, *, host: str | None = None, port: int | None = None) -> Config:
        """A copy listening elsewhere (``failover serve --host/--port``), checked again.

        Raises :class:`~failover.errors.ConfigError`, e.g. for a public host without api_keys.
        """
        updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        if not updates:
            return self
        try:
            data = {**self.server.model_dump(), **updates}
            server = ServerConfig.model_validate(data)
        except ValidationError as exc:
            problems = validation_problems(exc, data, ServerConfig, prefix=("server",))
            raise config_error(problems, "server") from None
        return self.model_copy(update={"server": server})


def _named(name: str, item: Any) -> Any:
    """``item`` given the name ``name`` (its key), unless it names itself."""
    if isinstance(item, Mapping) and "name" not in item:
        return {**item, "name": name}
    if isinstance(item, DeploymentConfig | RouteConfig) and not item.name:
        return item.model_copy(update={"name": name})
    return item
