"""Loading: a YAML file or a mapping, interpolated, validated into one :class:`Config`.

Every problem is reported at once, one line per problem, each named by its key path; relative
file paths (the SQLite store, CA bundles) are taken from the config file's directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from failover.config.env import Interpolation, read_dotenv
from failover.config.report import config_error, kind_of, unreadable_reason, validation_problems
from failover.config.root import Config
from failover.config.route import target_problems
from failover.config.secrets import secret_values
from failover.config.sections import SQLITE_URL_PREFIX, StoreConfig
from failover.errors import ConfigError


def config_from_dict(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Build a :class:`Config` from the file's structure as a mapping.

    ``${VAR}`` references are read from ``env`` (default: ``os.environ``); ``base_dir``, when
    given, anchors relative file paths (the SQLite store, CA bundles).

    >>> config = config_from_dict({
    ...     "deployments": {"mini": {"provider": "openai", "model": "gpt-4o-mini",
    ...                              "api_key": "${OPENAI_API_KEY}"}},
    ...     "routes": {"chat": {"targets": ["mini"]}},
    ... }, env={})
    >>> config.deployments["mini"].configured, config.deployments["mini"].not_configured_reason
    (False, 'OPENAI_API_KEY not set')
    """
    return validate_config(
        data,
        env=os.environ if env is None else env,
        source="config",
        base_dir=Path(base_dir) if base_dir is not None else None,
    )


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read a YAML config file; the ``.env`` beside it is read first.

    Variables already in ``env`` (default: ``os.environ``) win over the ``.env`` file; the process
    environment itself is not changed. Relative file paths in the config are taken from the
    file's directory. Raises :class:`~failover.errors.ConfigError` naming every problem.
    """
    file = Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "config file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            source, f"cannot read the config file ({unreadable_reason(exc)})"
        ) from None
    real = os.environ if env is None else env
    merged = {**read_dotenv(file.parent / ".env"), **real}
    return validate_config(
        _parse_yaml(text, source), env=merged, source=source, base_dir=file.parent
    )


def validate_config(
    raw: Any,
    *,
    env: Mapping[str, str],
    source: str,
    base_dir: Path | None,
    interpolate: bool = True,
) -> Config:
    """``raw``, the file's structure, as a :class:`Config`, or one ConfigError under ``source``.

    ``interpolate=False`` takes string values as they are (the zero-config mode builds its
    mapping from the environment already).
    """
    if not isinstance(raw, Mapping):
        what = "the file is empty" if raw is None else f"got {kind_of(raw)}"
        raise ConfigError(
            source,
            f"the top level must be a mapping of sections (deployments, routes, server, ...); "
            f"{what}",
        )
    interpolation = Interpolation(env=env)
    data = interpolation.substitute(raw) if interpolate else dict(raw)
    interpolation.secrets |= secret_values(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        found = validation_problems(exc, data, Config, from_env=interpolation.from_env)
        # Field errors stop pydantic before the cross-checks: run those on the raw data too.
        deployments, routes = data.get("deployments"), data.get("routes")
        if isinstance(deployments, Mapping) and isinstance(routes, Mapping):
            found += target_problems(deployments, routes)
        failed = {path for path, _ in interpolation.problems}
        found = [(path, message) for path, message in found if path not in failed]
        raise config_error(interpolation.problems + found, source, interpolation.secrets) from None
    if interpolation.problems:
        raise config_error(interpolation.problems, source, interpolation.secrets)
    return _resolve_paths(config, base_dir) if base_dir is not None else config


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    """Relative file paths (SQLite store, CA bundles) made relative to the config's directory."""
    base = base_dir.absolute()

    def resolve(text: str) -> str:
        path = Path(text).expanduser()
        return str(path if path.is_absolute() else base / path)

    updates: dict[str, Any] = {}
    url = config.store.url
    sqlite_path = url[len(SQLITE_URL_PREFIX) :]
    if url.startswith(SQLITE_URL_PREFIX) and sqlite_path not in ("", ":memory:"):
        updates["store"] = StoreConfig(url=SQLITE_URL_PREFIX + resolve(sqlite_path))
    if any(d.ca_bundle for d in config.deployments.values()):
        updates["deployments"] = {
            name: d.model_copy(update={"ca_bundle": resolve(d.ca_bundle)}) if d.ca_bundle else d
            for name, d in config.deployments.items()
        }
    return config.model_copy(update=updates) if updates else config


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key written twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        # Keys merged in with `<<: *anchor` may be overridden: only explicit keys count.
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        # problem/context only: the snippet pyyaml prints could show a key written in the file.
        mark = exc.problem_mark or exc.context_mark
        where = f" at {_position(mark)}" if mark else ""
        what = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.problem and exc.context_mark:
            what += f" ({exc.context} at {_position(exc.context_mark)})"
        raise ConfigError(source, f"invalid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"invalid YAML: {type(exc).__name__}") from None


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"
