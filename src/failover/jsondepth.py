"""How deep JSON may nest: one bound for what comes in and what failover writes out.

``orjson.loads`` reads up to 1024 levels of arrays and objects but ``orjson.dumps`` writes only
254, so a value read from a client (a body, or a JSON string inside it such as a tool call's
``arguments``) could be accepted and then fail to serialize towards a provider: a 500 instead
of the client's 400. :func:`nested_deeper` tells, once, whether a value is deeper than
:data:`MAX_DEPTH`.

>>> nested_deeper({"a": [1, 2]}), nested_deeper(eval("[" * 200 + "]" * 200))
(False, True)
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "nested_deeper"]

MAX_DEPTH = 128
"""The deepest nesting of arrays and objects a body may have (the body itself is level 1).

OpenAI publishes no such limit for the body; real requests stay far below it: its structured
outputs cap a schema's nesting at a few levels (5, later raised to 10; two JSON levels each,
under ``response_format.json_schema.schema`` or ``tools[i].function.parameters``: 25 at most)
and a message part is 5 deep. It is half of the 254 levels ``orjson.dumps`` can write, so that
an adapter's own wrapping of a field (a few levels) never reaches that.
"""


def nested_deeper(data: Any) -> bool:
    """Whether ``data`` nests arrays and objects more than :data:`MAX_DEPTH` levels deep (``data``
    is level 1).

    orjson writes ``data`` inside :data:`_SHELL`'s lists and refuses past its own limit exactly
    when ``data`` is too deep: all in C, about 4 us for a 2 KB body (parse_chat: about 28 us),
    a fifth to a quarter of what ``loads`` costs on 20-50 KB ones. A walk over the containers
    in Python costs as much as ``loads`` (5 times this on large bodies), and counting brackets
    in the bytes as a first filter costs 3 us at 2 KB and twice this at 40 KB. What ``loads``
    made has nothing else ``dumps`` could refuse.
    """
    try:
        orjson.dumps(_SHELL, default=lambda _: data)
    except orjson.JSONEncodeError:
        return True
    return False


def _dumps_depth() -> int:
    """The deepest nesting ``orjson.dumps`` writes (254 in orjson 3.13), found once: it is
    orjson's, not documented."""
    low, high = 1, 1024  # loads reads no deeper than 1024: a deeper limit changes nothing
    while low < high:
        middle = (low + high + 1) // 2
        nested: list[Any] = []
        for _ in range(middle - 1):
            nested = [nested]
        try:
            orjson.dumps(nested)
            low = middle
        except orjson.JSONEncodeError:
            high = middle - 1
    return low


def _shell(levels: int) -> Any:
    """``levels`` lists around a placeholder that orjson hands to ``default`` (lists: orjson
    writes them twice as fast as tuples; this one is never changed)."""
    shell: Any = object()
    for _ in range(levels):
        shell = [shell]
    return shell


_SHELL = _shell(max(_dumps_depth() - MAX_DEPTH, 0))
