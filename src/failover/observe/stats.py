"""``failover stats``: what the request log says about each route and deployment over a window.

The store answers one plain query per table (the requests that arrived in the window and their
attempts); the figures are computed here. Percentiles use the nearest-rank method on the exact
values, which is fine for the bounded windows a report covers.

Per route: requests; success, fallback (answered by a target other than the route's first),
degraded (the default response) and error rates; p50/p95/p99 of the request latency; tokens;
cost. Per deployment: attempts; requests it answered; its success rate over the attempts that got
an upstream outcome (cancelled ones and losers still running say nothing about it); answers it
gave as a fallback; hedges; p50/p95/p99 of its successful attempts' durations; tokens and cost of
its answers.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from failover.config import StoreConfig, load_config
from failover.config.sections import SQLITE_URL_PREFIX
from failover.errors import FailoverError
from failover.observe.records import DEGRADED, SUCCESS, RequestRow
from failover.observe.store import RecordStore, StoreError, Window, describe_url
from failover.observe.stores import open_store
from failover.types import AttemptOutcome

__all__ = [
    "DeploymentStats",
    "RouteStats",
    "StatsReport",
    "compute_stats",
    "parse_since",
    "percentile",
    "read_stats",
    "render_stats",
    "run_stats",
]

_DEFAULT_CONFIG_FILE = "failover.yaml"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# Outcomes with which the upstream answered (or failed on its own), unlike cancelled or running.
_NO_UPSTREAM_OUTCOME = frozenset({AttemptOutcome.CANCELLED.value, AttemptOutcome.RUNNING.value})
_ANSWERED = frozenset({AttemptOutcome.SUCCESS.value, AttemptOutcome.LOST_COMPLETED.value})


def parse_since(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``1h``, ``7d``, ``2w`` (a bare number is seconds).

    >>> parse_since("1h"), parse_since("90")
    (3600.0, 90.0)
    """
    match = _SINCE.match(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: write a positive number with s, m, h, d or w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ``values`` (None when there are none).

    >>> percentile([10, 20, 30, 40], 50), percentile([10, 20, 30, 40], 95)
    (20, 40)
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Figures:
    """What a route and a deployment report alike: latency percentiles (ms), tokens and cost."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


_Stats = TypeVar("_Stats", bound=_Figures)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteStats(_Figures):
    """One route's figures; rates are fractions, latencies milliseconds."""

    route: str
    requests: int
    success: int
    fallback: int
    degraded: int
    errors: int

    @property
    def success_rate(self) -> float:
        return self._share(self.success)

    @property
    def fallback_rate(self) -> float:
        return self._share(self.fallback)

    @property
    def degraded_rate(self) -> float:
        return self._share(self.degraded)

    @property
    def error_rate(self) -> float:
        return self._share(self.errors)

    def _share(self, count: int) -> float:
        """``count`` as a fraction of the requests (0 without any)."""
        return count / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentStats(_Figures):
    """One deployment's figures; ``success_rate`` is None without an upstream outcome."""

    deployment: str
    attempts: int
    answered: int
    succeeded: int
    judged: int
    fallback_answers: int
    hedges: int

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.judged if self.judged else None


@dataclass(frozen=True, slots=True)
class StatsReport:
    """The whole report: the window (epoch seconds) and a row per route and per deployment."""

    since: float
    until: float
    routes: tuple[RouteStats, ...]
    deployments: tuple[DeploymentStats, ...]

    @property
    def requests(self) -> int:
        return sum(route.requests for route in self.routes)


@dataclass(slots=True)
class _Tally:
    """Running sums for one route or deployment."""

    requests: int = 0
    success: int = 0
    fallback: int = 0
    degraded: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    hedges: int = 0
    judged: int = 0
    succeeded: int = 0
    latencies: list[float] = field(default_factory=list)

    def add_request(self, request: RequestRow) -> None:
        self.requests += 1
        self.fallback += request.fallback
        self.prompt_tokens += request.prompt_tokens
        self.completion_tokens += request.completion_tokens
        self.cost_usd += request.cost_usd

    def stats(self, kind: type[_Stats], **counts: Any) -> _Stats:
        """``kind`` with these figures and the ``counts`` only it has."""
        return kind(
            p50_ms=percentile(self.latencies, 50),
            p95_ms=percentile(self.latencies, 95),
            p99_ms=percentile(self.latencies, 99),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=round(self.cost_usd, 10),
            **counts,
        )


def compute_stats(window: Window, *, since: float, until: float) -> StatsReport:
    """The figures of ``window``'s requests and attempts."""
    routes: dict[str, _Tally] = defaultdict(_Tally)
    deployments: dict[str, _Tally] = defaultdict(_Tally)
    for request in window.requests:
        route = routes[request.route]
        route.add_request(request)
        route.success += request.outcome == SUCCESS
        route.degraded += request.outcome == DEGRADED
        route.errors += request.outcome not in (SUCCESS, DEGRADED)
        route.latencies.append(request.latency_ms)
        if request.deployment is not None:
            deployments[request.deployment].add_request(request)
    for attempt in window.attempts:
        deployment = deployments[attempt.deployment]
        deployment.attempts += 1
        deployment.hedges += attempt.hedge
        if attempt.outcome in _NO_UPSTREAM_OUTCOME:
            continue
        deployment.judged += 1
        if attempt.outcome in _ANSWERED:
            deployment.succeeded += 1
            if attempt.end_ms is not None:
                deployment.latencies.append(attempt.end_ms - attempt.start_ms)
    return StatsReport(
        since=since,
        until=until,
        routes=tuple(
            t.stats(
                RouteStats,
                route=name,
                requests=t.requests,
                success=t.success,
                fallback=t.fallback,
                degraded=t.degraded,
                errors=t.errors,
            )
            for name, t in sorted(routes.items())
        ),
        deployments=tuple(
            t.stats(
                DeploymentStats,
                deployment=name,
                attempts=t.attempts,
                answered=t.requests,
                succeeded=t.succeeded,
                judged=t.judged,
                fallback_answers=t.fallback,
                hedges=t.hedges,
            )
            for name, t in sorted(deployments.items())
        ),
    )


async def read_stats(
    store: RecordStore, *, seconds: float, now: float | None = None
) -> StatsReport:
    """The report of the last ``seconds`` read from ``store``."""
    until = time.time() if now is None else now
    since = until - seconds
    return compute_stats(await store.window(since), since=since, until=until)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _table(title: str, columns: Sequence[str]) -> Table:
    """A table of ``columns`` then the latency and cost ones; only the first is left-aligned."""
    table = Table(title=title)
    for position, column in enumerate((*columns, "p50", "p95", "p99", "tokens", "cost $")):
        table.add_column(column, justify="left" if position == 0 else "right")
    return table


def _figure_cells(stats: _Figures) -> tuple[str, ...]:
    """The cells under the latency and cost columns of :func:`_table`."""
    return (
        _ms(stats.p50_ms),
        _ms(stats.p95_ms),
        _ms(stats.p99_ms),
        f"{stats.prompt_tokens + stats.completion_tokens:,}",
        f"{stats.cost_usd:.4f}",
    )


def render_stats(report: StatsReport, console: Console, *, title: str = "") -> None:
    """Print the report as two tables (routes, deployments)."""
    window = (report.until - report.since) / 3600
    heading = title or f"failover stats: last {window:g} h, {report.requests} requests"
    if not report.routes:
        console.print(f"{heading}: no request in this window.")
        return
    routes = _table(heading, ("route", "requests", "success", "fallback", "degraded", "errors"))
    for r in report.routes:
        routes.add_row(
            r.route,
            str(r.requests),
            _percent(r.success_rate),
            _percent(r.fallback_rate),
            _percent(r.degraded_rate),
            _percent(r.error_rate),
            *_figure_cells(r),
        )
    console.print(routes)
    deployments = _table(
        "deployments", ("deployment", "attempts", "answered", "success", "as fallback", "hedges")
    )
    for d in report.deployments:
        deployments.add_row(
            d.deployment,
            str(d.attempts),
            str(d.answered),
            _percent(d.success_rate),
            str(d.fallback_answers),
            str(d.hedges),
            *_figure_cells(d),
        )
    console.print(deployments)


def run_stats(
    *,
    store: str | None,
    since: str = "1h",
    config: str | None = None,
    console: Console | None = None,
) -> int:
    """``failover stats``: print the report; the exit status (1 when the store cannot be read).

    The store is ``store`` when given, else the ``store.url`` of the config ``failover serve``
    would run (``config``, else ``./failover.yaml`` when present), else ``sqlite:///failover.db``.
    """
    out = console if console is not None else Console()
    err = Console(stderr=True) if console is None else console
    try:
        seconds = parse_since(since)
        url = store or _configured_store(config)
    except (ValueError, FailoverError) as exc:
        err.print(f"failover stats: {exc}", markup=False, highlight=False)
        return 2
    if url.startswith(SQLITE_URL_PREFIX) and not Path(url.removeprefix(SQLITE_URL_PREFIX)).exists():
        err.print(f"failover stats: no request log at {url}", markup=False, highlight=False)
        return 1
    opened = open_store(url)
    if opened is None:
        err.print("failover stats: the request log is disabled (store.url: none)")
        return 1
    try:
        report = asyncio.run(_read_and_close(opened, seconds))
    except StoreError as exc:
        err.print(f"failover stats: {exc}", markup=False, highlight=False)
        return 1
    render_stats(report, out, title=f"failover stats: {describe_url(url)}, last {since}")
    return 0


def _configured_store(path: str | None) -> str:
    if path is not None:
        return load_config(Path(path)).store.url
    # The same file `failover serve` reads by default; without it the store is the default one
    # (the zero-config mode sets no store).
    default = Path(_DEFAULT_CONFIG_FILE)
    return load_config(default).store.url if default.is_file() else StoreConfig().url


async def _read_and_close(store: RecordStore, seconds: float) -> StatsReport:
    try:
        return await read_stats(store, seconds=seconds)
    finally:
        await store.aclose()
