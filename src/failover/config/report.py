"""Problems in plain words: pydantic's ValidationError as path-named lines, one ConfigError.

Messages echo only values that are neither secret nor read from the environment, and every
secret value found is scrubbed from the final text as a last guard::

    >>> print(config_error([(("server", "port"), "must be at least 0, got -1"),
    ...                     (("routes", "r", "targets", 1), "unknown deployment 'b'")], "config"))
    config: 2 problems:
      server.port: must be at least 0, got -1
      routes.r.targets[1]: unknown deployment 'b'
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError

from failover.config.base import KeyPath, Problems, did_you_mean, format_path, problem_line
from failover.config.secrets import is_secret_path
from failover.errors import ConfigError


def config_error(
    problems: Sequence[tuple[KeyPath, str]], source: str, secrets: Iterable[str] = ()
) -> ConfigError:
    """One ConfigError for every problem: ``path: message`` alone, or a list under ``source``."""
    scrub = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def clean(text: str) -> str:
        for secret in scrub:
            text = text.replace(secret, "***")
        return text

    unique = list(dict.fromkeys((format_path(p), clean(m)) for p, m in problems))
    if len(unique) == 1:
        return ConfigError(*unique[0])
    lines = "\n".join(f"  {problem_line(path, message)}" for path, message in unique)
    return ConfigError(source, f"{len(unique)} problems:\n{lines}")


def validation_problems(
    exc: ValidationError,
    data: Any,
    root: Any,
    prefix: KeyPath = (),
    from_env: set[KeyPath] | None = None,
) -> list[tuple[KeyPath, str]]:
    """``exc``, raised validating ``data`` as ``root`` (the model found at ``prefix``), as problems.

    Paths in ``from_env`` had their value read from the environment: it is never echoed.
    """
    return _Reporter(data, root, prefix, from_env or set()).problems(exc)


def kind_of(value: Any) -> str:
    """What ``value`` is, in the file's words: ``a string``, ``a list``, ``nothing (null)``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def unreadable_reason(exc: BaseException) -> str:
    """Why a file could not be read, without its content: ``not UTF-8 text``, an OS reason."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(exc, "strerror", None) or type(exc).__name__


# Fields whose string values are plain words, safe and useful to repeat in a message.
_ECHOED_LEAVES = frozenset({"provider", "backend", "kind", "min_level", "hedge_after", "host"})

_LIMIT_WORDS = {
    "greater_than": ("must be greater than", "gt"),
    "greater_than_equal": ("must be at least", "ge"),
    "less_than": ("must be less than", "lt"),
    "less_than_equal": ("must be at most", "le"),
}

_TYPE_WORDS = (
    ("int_", "a whole number"),
    ("float_", "a number"),
    ("bool_", "true or false"),
    ("dict_", "a mapping (key: value)"),
    ("model_", "a mapping (key: value)"),
    ("mapping_", "a mapping (key: value)"),
    ("list_", "a list"),
    ("tuple_", "a list"),
    ("iterable_", "a list"),
)


class _Reporter:
    """Turns one pydantic ValidationError into ``(path, plain message)`` problems."""

    def __init__(self, data: Any, root: Any, prefix: KeyPath, from_env: set[KeyPath]) -> None:
        self.data = data
        self.root = root
        self.prefix = prefix
        self.from_env = from_env

    def problems(self, exc: ValidationError) -> list[tuple[KeyPath, str]]:
        found: list[tuple[KeyPath, str]] = []
        errors = exc.errors(include_url=False)
        for error in errors:
            path, annotation, is_key = self._locate(error["loc"])
            context = error.get("ctx") or {}
            cause = context.get("error")
            if isinstance(cause, Problems):
                found += [(path + sub, message) for sub, message in cause.problems]
                continue
            if error["type"] == "extra_forbidden" and path:
                parent = _model_class(self._annotation_at(path[:-1]))
                fields = parent.model_fields if parent is not None else {}
                valid = [name for name in fields if name != "name"]
                found.append(
                    (path[:-1], f"unknown key {path[-1]!r}{did_you_mean(str(path[-1]), valid)}")
                )
                continue
            if error["type"] == "too_short" and any(
                other["loc"][: len(error["loc"])] == error["loc"] and other is not error
                for other in errors
            ):
                continue  # the list is not empty: its items failed, and say so themselves
            found.append((path, self._describe(error, path, annotation, is_key)))
        return found

    def _annotation_at(self, path: KeyPath) -> Any:
        annotation = self.root
        for part in path[len(self.prefix) :]:
            annotation = _descend(annotation, part)
        return annotation

    def _locate(self, loc: tuple[str | int, ...]) -> tuple[KeyPath, Any, bool]:
        """The real key path of ``loc`` (pydantic's union-member tags dropped)."""
        path: list[str | int] = list(self.prefix)
        node: Any = self.data
        annotation = self.root
        is_key = False
        for part in loc:
            if part == "[key]":
                is_key = True
                continue
            model = _model_class(annotation)
            if isinstance(node, Mapping) and part in node:
                node = node[part]
                path.append(str(part))
            elif isinstance(node, list | tuple) and isinstance(part, int) and part < len(node):
                node = node[part]
                path.append(part)
            elif model is not None and part in model.model_fields:
                node = None
                path.append(part)
            else:
                continue  # a tag pydantic adds for a union member, not a key
            annotation = _descend(annotation, path[-1])
        return tuple(path), annotation, is_key

    def _shown(self, path: KeyPath, value: Any) -> str | None:
        """``value`` as it may appear in a message, or None when it must not."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return _number(value)
        if (
            isinstance(value, str)
            and _leaf(path) in _ECHOED_LEAVES
            and path not in self.from_env
            and not is_secret_path(path)
            and len(value) <= 60
        ):
            return repr(value)
        return None

    def _describe(self, error: Any, path: KeyPath, annotation: Any, is_key: bool) -> str:
        kind, value = error["type"], error.get("input")
        context = error.get("ctx") or {}
        shown = self._shown(path, value)
        got = f", got {shown if shown is not None else kind_of(value)}"
        if is_key or kind == "invalid_key":
            return f"keys must be strings, got {kind_of(value)}"
        if kind == "missing":
            return "is required"
        if kind in ("value_error", "assertion_error") and "error" in context:
            return str(context["error"])
        if kind in ("enum", "literal_error"):
            choices = _choices(annotation)
            name = (
                f"unknown {_leaf(path) or 'value'} {shown}"
                if shown and isinstance(value, str)
                else "unknown value"
            )
            hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
            return f"{name}{hint}; use one of: {', '.join(choices)}"
        if kind in _LIMIT_WORDS:
            words, key = _LIMIT_WORDS[kind]
            return f"{words} {_number(context.get(key))}{got}"
        if kind == "too_short":
            least = context.get("min_length", 1)
            return "must not be empty" if least == 1 else f"must have at least {least} items"
        if kind == "too_long":
            return f"must have at most {context.get('max_length')} items"
        if kind == "string_too_short":
            return "must not be empty"
        if kind == "finite_number":
            return "must be a finite number"
        if kind == "string_type":
            quote = "; quote it" if isinstance(value, int | float | bool) else ""
            return f"must be a string, got {kind_of(value)}{quote}"
        for prefix, words in _TYPE_WORDS:
            if kind.startswith(prefix):
                return f"must be {words}{got}"
        text = str(error.get("msg", "is invalid"))
        return text.replace("Input should be", "should be")


def _leaf(path: KeyPath) -> str:
    """The last key name of ``path`` (list indexes skipped), or ``""``."""
    return next((part for part in reversed(path) if isinstance(part, str)), "")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_UNION_TYPE = type(int | None)


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``| None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, _UNION_TYPE) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The model ``annotation`` names (through ``Annotated`` and ``| None``), or None."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _descend(annotation: Any, part: str | int) -> Any:
    """The annotation one step down ``part``, or None when unknown."""
    model = _model_class(annotation)
    if model is not None:
        field = model.model_fields.get(str(part))
        return field.annotation if field is not None else None
    annotation = _unwrap(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        if isinstance(part, int) and part < len(args):
            return args[part]
    return None


def _choices(annotation: Any) -> list[str]:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    if typing.get_origin(annotation) is Literal:
        return [str(arg) for arg in typing.get_args(annotation)]
    return []
