"""Typed, frozen configuration: the config file, loaded once into frozen models.

Three ways in, one result (:class:`Config`), one error type (:class:`~failover.errors.ConfigError`):

- :func:`load_config` reads a YAML file; a ``.env`` file beside it is read first.
- :func:`config_from_dict` takes the same structure as a mapping (``Gateway.from_dict``).
- :func:`config_from_env` is the zero-config mode: one route ``default`` from the provider keys
  present in the environment.

``${VAR}`` and ``${VAR:-default}`` are replaced in every string value (``$${`` writes a literal
``${``; a default may itself hold a ``${...}``). An unset ``${VAR}`` without a default is an
error, except in ``deployments.*.api_key``: that deployment is then not configured and never
called. Every problem is reported at once, one line per problem, each named by its key path::

    >>> config_from_dict({"deployments": {"a": {"provider": "openai", "model": "m",
    ...                   "timeout": -1}}, "routes": {"r": {"targets": ["a", "b"]}}}, env={})
    Traceback (most recent call last):
    ...
    failover.errors.ConfigError: config: 2 problems:
      deployments.a.timeout: must be greater than 0, got -1
      routes.r.targets[1]: unknown deployment 'b'

A route may share its name with a deployment: the route wins (a client asking for that name gets
the route, whose targets may include that very deployment, the usual "this model, with fallbacks"
pattern). No message, repr or traceback of this package ever shows a key: keys are ``SecretStr``,
pydantic's errors hide their input, and the loader's own messages echo only values that are
neither secret nor read from the environment. The environment is read in this package and nowhere
else.

The modules, from the bottom up:

- ``base``: the frozen model base, seconds types, problems at key paths.
- ``secrets``: which values are secret, which keys count as none.
- ``sections``, ``deployment``, ``route``, ``root``: the models, section by section;
  ``root`` holds :class:`Config` and its cross-checks.
- ``report``: pydantic's errors in plain words, one :class:`~failover.errors.ConfigError`.
- ``env``: ``.env`` files and ``${VAR}`` interpolation.
- ``load``: YAML files and mappings into a :class:`Config`.
- ``zero``: the zero-config mode.
"""

from failover.config.deployment import DeploymentConfig, Price, Provider
from failover.config.env import read_dotenv
from failover.config.load import config_from_dict, load_config
from failover.config.root import Config
from failover.config.route import RetryBudgetConfig, RetryConfig, RouteConfig
from failover.config.sections import (
    AlertConfig,
    AlertLevel,
    HealthConfig,
    RateLimit,
    RateLimitsConfig,
    StateConfig,
    StoreConfig,
    TelemetryConfig,
)
from failover.config.zero import config_from_env

__all__ = [
    "AlertConfig",
    "AlertLevel",
    "Config",
    "DeploymentConfig",
    "HealthConfig",
    "Price",
    "Provider",
    "RateLimit",
    "RateLimitsConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "RouteConfig",
    "StateConfig",
    "StoreConfig",
    "TelemetryConfig",
    "config_from_dict",
    "config_from_env",
    "load_config",
    "read_dotenv",
]
