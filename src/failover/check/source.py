"""Which config a command runs on: ``--config``, else ``./failover.yaml``, else the environment.

This is the resolution of ``failover serve``; ``failover check`` uses the same, so that
checking answers for exactly what serving would run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from failover.config import Config, config_from_env, load_config, read_dotenv

__all__ = ["DEFAULT_CONFIG_FILE", "resolve_config"]

DEFAULT_CONFIG_FILE = "failover.yaml"


def resolve_config(
    path: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """The config a command runs on.

    ``path`` (``--config``) when given; else ``failover.yaml`` in ``cwd`` (default: the current
    directory) when it exists; else the zero-config mode over ``env`` (default: the process
    environment) and the ``.env`` file in ``cwd``, the environment winning. Raises
    :class:`~failover.errors.ConfigError`.

    >>> resolve_config("failover.yaml").routes  # doctest: +SKIP
    """
    here = Path.cwd() if cwd is None else Path(cwd)
    if path is not None:
        file = Path(path)
        return load_config(file if file.is_absolute() else here / file, env=env)
    default = here / DEFAULT_CONFIG_FILE
    if default.is_file():
        return load_config(default, env=env)
    # The config package reads the process environment itself; only the zero-config mode needs
    # it merged with a .env first, which its API takes as one mapping.
    environment = os.environ if env is None else env
    return config_from_env({**read_dotenv(here / ".env"), **environment})
