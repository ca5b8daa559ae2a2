"""Showing check rows and status rows: rich tables for a terminal, plain lines for a log.

Every cell is a :class:`rich.text.Text`, never markup: provider messages hold brackets
(``[REDACTED]``) that rich would otherwise read as style tags and swallow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from failover.check.probe import CheckRow, Reachability

__all__ = ["check_lines", "check_table", "route_lines", "status_table"]

_REACHABLE_STYLE = {
    Reachability.YES: "green",
    Reachability.NO: "bold red",
    Reachability.NOT_CONFIGURED: "yellow",
}
_STATE_STYLE = {
    "available": "green",
    "half_open": "yellow",
    "rate_limited": "yellow",
    "circuit_open": "bold red",
    "not_configured": "dim",
}
_NONE = "-"


def check_table(rows: Sequence[CheckRow]) -> Table:
    """The rows of :func:`~failover.check.check_deployments` as a rich table.

    >>> from rich.console import Console
    >>> Console().print(check_table(rows))  # doctest: +SKIP
    """
    table = Table(title="failover check", title_justify="left")
    # Narrow terminals wrap cells rather than cut them: a cut name or message is no use.
    for header in ("deployment", "provider", "model", "reachable"):
        table.add_column(header, overflow="fold")
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    table.add_column("message", overflow="fold")
    for row in rows:
        table.add_row(
            Text(row.deployment, style="bold"),
            Text(row.provider),
            Text(row.model),
            Text(row.reachable.value, style=_REACHABLE_STYLE[row.reachable]),
            Text(_duration(row.latency)),
            Text(_error(row)),
            Text(row.message),
        )
    return table


def check_lines(rows: Sequence[CheckRow]) -> list[str]:
    """One plain line per row, for a log: what was probed, and what came of it."""
    lines = []
    for row in rows:
        what = f"deployment {row.deployment!r} ({row.provider} {row.model})"
        if row.reachable is Reachability.YES:
            lines.append(f"{what}: reachable in {_duration(row.latency)}")
        elif row.reachable is Reachability.NOT_CONFIGURED:
            lines.append(f"{what}: not configured ({row.message}); it will not be called")
        else:
            detail = f": {row.message}" if row.message else ""
            lines.append(f"{what}: unreachable, {_error(row)}{detail}")
    return lines


def route_lines(unreachable: Mapping[str, Sequence[CheckRow]]) -> list[str]:
    """One line per route left without a reachable deployment, naming why each target failed."""
    lines = []
    for route, rows in unreachable.items():
        why = ", ".join(f"{row.deployment}: {_reason(row)}" for row in rows) or "no targets"
        lines.append(f"route {route!r}: no reachable deployment ({why})")
    return lines


def status_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The rows of ``GET /v1/status`` (``DeploymentStatus.as_dict()`` each) as a rich table.

    Missing or unexpected fields show as ``-``, so a newer or older gateway still reads.
    """
    table = Table(title="failover status", title_justify="left")
    for header in ("deployment", "state"):
        table.add_column(header, overflow="fold")
    for header in ("failures", "cooldown ends in"):
        table.add_column(header, justify="right", overflow="fold")
    table.add_column("last error", overflow="fold")
    for header in ("success", "p50", "p95", "p99", "samples"):
        table.add_column(header, justify="right", overflow="fold")
    for row in rows:
        latency = row.get("latency")
        latency = latency if isinstance(latency, Mapping) else {}
        state = _text(row.get("state"))
        if row.get("probe_in_flight") is True:
            state += " (probing)"
        table.add_row(
            Text(_text(row.get("deployment")), style="bold"),
            Text(state, style=_STATE_STYLE.get(_text(row.get("state")), "")),
            Text(_text(row.get("consecutive_failures"))),
            Text(_duration(_number(row.get("cooldown_ends_in")))),
            Text(_text(row.get("last_error"))),
            Text(_percent(_number(row.get("success_rate")))),
            *(Text(_duration(_number(latency.get(q)))) for q in ("p50", "p95", "p99")),
            Text(_text(row.get("samples"))),
        )
    return table


def _error(row: CheckRow) -> str:
    if row.error_class is None:
        return _NONE
    if row.status is None:
        return row.error_class.value
    return f"{row.error_class.value} ({row.status})"


def _reason(row: CheckRow) -> str:
    if row.reachable is Reachability.NOT_CONFIGURED:
        return "not configured"
    return _error(row) if row.error_class is not None else row.reachable.value


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _NONE
    if seconds < 10:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def _percent(rate: float | None) -> str:
    return _NONE if rate is None else f"{rate * 100:.1f}%"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: Any) -> str:
    return _NONE if value is None else str(value)
