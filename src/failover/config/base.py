"""What every config model shares: a strict frozen base, seconds types, problems at key paths.

A model validator that finds problems raises :class:`Problems`, each problem at a path relative
to the model it checked, so that the loader reports each at its own key path instead of
pydantic's one location per validator::

    >>> format_path(("routes", "intent", "targets", 1))
    'routes.intent.targets[1]'
    >>> str(Problems.at("url", "a webhook alert needs a url"))
    'url: a webhook alert needs a url'
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

KeyPath = tuple[str | int, ...]
"""A key path: mapping keys as ``str``, list indexes as ``int``."""

PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FrozenModel(BaseModel):
    """The base of every config model: unknown keys rejected, fields frozen, input never shown."""

    # hide_input_in_errors: a ValidationError raised by direct construction must not print a key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def format_path(path: Iterable[str | int]) -> str:
    """``("routes", "intent", "targets", 1)`` -> ``routes.intent.targets[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def problem_line(where: str, message: str) -> str:
    """``where: message``, or the message alone for a problem with the whole document."""
    return f"{where}: {message}" if where else message


class Problems(ValueError):
    """Problems found by a model validator, each at a path relative to the model it checked."""

    def __init__(self, problems: Sequence[tuple[KeyPath, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "; ".join(problem_line(format_path(path), message) for path, message in self.problems)
        )

    @classmethod
    def at(cls, key: str, message: str) -> Problems:
        """One problem, at the field ``key`` of the model being checked."""
        return cls([((key,), message)])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the choice closest to ``word``, or ``""`` when none is close.

    >>> did_you_mean("timeoutt", ["timeout", "model"])
    " (did you mean 'timeout'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
