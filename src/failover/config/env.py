"""The environment: ``.env`` files, and ``${VAR}`` / ``${VAR:-default}`` in string values.

``$${`` writes a literal ``${``; a default may itself hold a ``${...}``; ``:-`` also replaces a
variable set to ``""``, as in the shell. An unset ``${VAR}`` without a default is a problem at
its key path, except in ``deployments.*.api_key``, where it leaves the deployment not
configured::

    >>> interpolation = Interpolation(env={"TEAM": "ops"})
    >>> interpolation.substitute({"note": "from ${TEAM}, ${WHO:-anyone}", "cost": "$${PRICE}"})
    {'note': 'from ops, anyone', 'cost': '${PRICE}'}
    >>> interpolation.substitute({"url": "${LOCAL_URL}"})
    {'url': ''}
    >>> interpolation.problems
    [(('url',), 'LOCAL_URL is not set (set it, or give a default: ${LOCAL_URL:-value})')]
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failover.config.base import KeyPath
from failover.config.deployment import UnsetVariable
from failover.config.report import unreadable_reason
from failover.config.secrets import is_secret_variable
from failover.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``.env`` file: ``KEY=VALUE`` lines; a missing file is empty.

    ``#`` starts a comment (at the start of a line, or after a space outside quotes); values may
    be quoted with ``'`` (literal) or ``"`` (``\\n``, ``\\"``, ``\\\\`` escapes); an ``export ``
    prefix is ignored. Errors name the line, never its content.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            str(file), f"cannot read the .env file ({unreadable_reason(exc)})"
        ) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME_RE.fullmatch(name):
            raise ConfigError(str(file), f"line {number}: expected KEY=VALUE")
        try:
            values[name] = _dotenv_value(value.strip())
        except ValueError as exc:
            raise ConfigError(str(file), f"line {number} ({name}): {exc}") from None
    return values


def _dotenv_value(text: str) -> str:
    if not text or text[0] not in "'\"":
        # Unquoted: a '#' after whitespace starts a comment.
        return re.split(r"\s#", text, maxsplit=1)[0].rstrip()
    quote, chars, index = text[0], [], 1
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while index < len(text) and text[index] != quote:
        char = text[index]
        if quote == '"' and char == "\\" and index + 1 < len(text):
            index += 1
            char = escapes.get(text[index], "\\" + text[index])
        chars.append(char)
        index += 1
    if index >= len(text):
        raise ValueError("the quote is not closed")
    rest = text[index + 1 :].strip()
    if rest and not rest.startswith("#"):
        raise ValueError("unexpected text after the closing quote")
    return "".join(chars)


@dataclass
class Interpolation:
    """Interpolating one document: the variables, and what doing so found.

    Problems are collected, not raised, so that the loader reports them with every other.
    """

    env: Mapping[str, str]
    problems: list[tuple[KeyPath, str]] = field(default_factory=list)
    from_env: set[KeyPath] = field(default_factory=set)
    """Paths whose value came (partly) from the environment: never echoed in a message."""
    secrets: set[str] = field(default_factory=set)
    """Values to scrub from every message."""

    def substitute(self, node: Any, path: KeyPath = ()) -> Any:
        """``node`` with ``${...}`` replaced in every string under it; lists become lists."""
        if isinstance(node, Mapping):
            return {key: self.substitute(value, (*path, str(key))) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [self.substitute(value, (*path, index)) for index, value in enumerate(node)]
        if not isinstance(node, str) or "$" not in node:
            return node
        try:
            value, missing, used = _expand(node, self.env)
        except ValueError as exc:
            self.problems.append((path, str(exc)))
            return ""
        if used:
            self.from_env.add(path)
            self.secrets.update(self.env[name] for name in used if is_secret_variable(name))
        if missing:
            names = tuple(dict.fromkeys(missing))
            if len(path) == 3 and path[0] == "deployments" and path[2] == "api_key":
                return UnsetVariable(names)
            listed = " and ".join(names)
            verb = "is" if len(names) == 1 else "are"
            self.problems.append(
                (
                    path,
                    f"{listed} {verb} not set (set it, or give a default: ${{{names[0]}:-value}})",
                )
            )
            return ""
        return value


def _expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
    """``text`` with ``${...}`` replaced; also the unset names and the names read."""
    out: list[str] = []
    missing: list[str] = []
    used: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith("$${", index):
            out.append("${")
            index += 3
            continue
        if not text.startswith("${", index):
            out.append(text[index])
            index += 1
            continue
        end = _closing_brace(text, index + 2)
        body = text[index + 2 : end]
        name, sep, default = body.partition(":-")
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"bad variable reference '${{{body}}}': write ${{NAME}} or ${{NAME:-default}}"
            )
        value = env.get(name)
        if value:
            used.append(name)
        elif sep:
            # ':-' as in the shell: the default also replaces a variable set to "".
            value, inner_missing, inner_used = _expand(default, env)
            missing += inner_missing
            used += inner_used
        elif value is None:
            missing.append(name)
            value = ""
        out.append(value)
        index = end + 1
    return "".join(out), missing, used


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    index = start
    while index < len(text):
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    raise ValueError("a '${' is not closed by '}'")
