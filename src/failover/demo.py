"""``failover demo``: failover at work on three mock providers, with no key and no network.

It starts three :class:`~failover.mock_upstream.MockUpstream` servers on loopback with different
faults (a heavy-tailed primary, a rate-limited second, a flaky third), puts a hedged route in front
of them, drives a few hundred requests through it while a live table shows what happens, then
sends the same load to the primary alone and compares success rate and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from failover.engine.events import Event, EventKind
from failover.errors import FailoverError
from failover.gateway import Gateway
from failover.mock_upstream import MockUpstream

__all__ = ["DemoRun", "main", "run_demo"]

PROVIDERS = (
    ("primary", "heavy-tail"),
    ("secondary", "rate-limited"),
    ("tertiary", "flaky"),
)
ROUTE = "demo"
DEFAULT_TEXT = "Sorry, the assistant is busy; please try again."


@dataclass
class DemoRun:
    """What one load run saw: answers by deployment, hedges, failures and latencies."""

    label: str
    total: int
    latencies: list[float] = field(default_factory=list)
    answered_by: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    degraded: int = 0
    hedges: int = 0
    fallbacks: int = 0
    attempts: int = 0

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def success_rate(self) -> float:
        ok = self.done - self.failed - self.degraded
        return ok / self.done if self.done else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Counting:
    """An engine observer that counts hedges for the live table."""

    def __init__(self) -> None:
        self.run: DemoRun | None = None

    def on_event(self, event: Event) -> None:
        if self.run is not None and event.kind is EventKind.HEDGE_STARTED:
            self.run.hedges += 1


def _config(urls: dict[str, str]) -> dict[str, Any]:
    return {
        "health": {
            "failure_threshold": 3,
            "recovery_seconds": 2,
            "max_recovery_seconds": 10,
            "rate_limit_cooldown": 1,
            "check_on_startup": False,
        },
        "deployments": {
            name: {
                "provider": "openai-compatible",
                "model": f"mock-{name}",
                "api_base": url,
                "api_key": "demo-key",
                "timeout": 8,
                "max_retries": 1,
            }
            for name, url in urls.items()
        },
        "routes": {
            ROUTE: {
                "targets": [name for name, _ in PROVIDERS],
                "hedge_after": 0.5,
                "deadline": 3.0,
                "default_response": DEFAULT_TEXT,
                "retry": {"backoff": 0.05, "max_backoff": 0.5},
            }
        },
    }


async def _drive(
    gateway: Gateway,
    model: str,
    run: DemoRun,
    concurrency: int,
    refresh: Callable[[], None],
) -> None:
    queue = iter(range(run.total))
    primary = PROVIDERS[0][0]

    async def one() -> None:
        started = time.perf_counter()
        try:
            result = await gateway.chat(model, [{"role": "user", "content": "Say hello."}])
        except FailoverError:
            run.failed += 1
        else:
            run.attempts += len(result.attempts)
            if result.degraded:
                run.degraded += 1
            elif result.deployment is not None:
                run.answered_by[result.deployment] += 1
                if result.deployment != primary:
                    run.fallbacks += 1
        run.latencies.append(time.perf_counter() - started)
        refresh()

    async def worker() -> None:
        for _ in queue:
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _table(gateway: Gateway, runs: list[DemoRun]) -> Group:
    health = Table(title="providers", title_justify="left")
    for column in ("deployment", "profile", "state", "failures", "success", "p50 ms", "p99 ms"):
        health.add_column(column)
    snapshot = gateway.health.snapshot() if hasattr(gateway.health, "snapshot") else {}
    for name, profile in PROVIDERS:
        status = snapshot.get(name)
        if status is None:
            continue
        rate = "-" if status.success_rate is None else f"{status.success_rate:.0%}"
        p50 = "-" if status.p50 is None else f"{status.p50 * 1000:.0f}"
        p99 = "-" if status.p99 is None else f"{status.p99 * 1000:.0f}"
        health.add_row(name, profile, status.state.value, str(status.failures), rate, p50, p99)

    traffic = Table(title="requests", title_justify="left")
    traffic.add_column("")
    for run in runs:
        traffic.add_column(run.label, justify="right")
    rows: list[tuple[str, Callable[[DemoRun], str]]] = [
        ("done", lambda r: f"{r.done}/{r.total}"),
        ("answered by a provider", lambda r: f"{r.success_rate:.1%}"),
        ("degraded (default answer)", lambda r: str(r.degraded)),
        ("failed", lambda r: str(r.failed)),
        ("hedges started", lambda r: str(r.hedges)),
        ("answered by a fallback", lambda r: str(r.fallbacks)),
        ("p50 ms", lambda r: f"{r.percentile(0.5) * 1000:.0f}"),
        ("p99 ms", lambda r: f"{r.percentile(0.99) * 1000:.0f}"),
    ]
    for label, cell in rows:
        traffic.add_row(label, *(cell(run) for run in runs))
    for name, _ in PROVIDERS:
        traffic.add_row(f"answers from {name}", *(str(run.answered_by[name]) for run in runs))
    return Group(health, traffic)


@contextlib.asynccontextmanager
async def _upstreams(seed: int) -> AsyncIterator[dict[str, str]]:
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for offset, (name, profile) in enumerate(PROVIDERS):
            mock = await stack.enter_async_context(
                MockUpstream(profile, name=name, seed=seed + offset)
            )
            urls[name] = mock.url
        yield urls


async def run_demo(
    *, requests: int = 300, concurrency: int = 16, seed: int = 7, console: Console | None = None
) -> list[DemoRun]:
    """Run the demo and return its two runs: through failover, then the primary alone."""
    console = console or Console()
    counting = _Counting()
    runs = [
        DemoRun("failover (hedged route)", requests),
        DemoRun("primary alone", requests),
    ]
    async with (
        _upstreams(seed) as urls,
        Gateway.from_dict(_config(urls), observer=counting) as gateway,
    ):
        with Live(_table(gateway, runs), console=console, refresh_per_second=8) as live:

            def refresh() -> None:
                live.update(_table(gateway, runs))

            for run, model in zip(runs, (ROUTE, PROVIDERS[0][0]), strict=True):
                counting.run = run
                await _drive(gateway, model, run, concurrency, refresh)
            refresh()
    return runs


def _summary(console: Console, runs: list[DemoRun]) -> None:
    hedged, alone = runs
    console.print()
    console.print(
        f"[bold]With failover[/]: {hedged.success_rate:.1%} answered by a provider, "
        f"p99 {hedged.percentile(0.99) * 1000:.0f} ms, "
        f"{hedged.attempts - hedged.done} extra upstream attempts "
        f"({(hedged.attempts - hedged.done) / max(1, hedged.done):.0%})."
    )
    console.print(
        f"[bold]Primary alone[/]: {alone.success_rate:.1%} answered, "
        f"p99 {alone.percentile(0.99) * 1000:.0f} ms."
    )
    console.print(
        "\nPoint it at real providers: write a failover.yaml (see README.md), set your keys "
        "(OPENAI_API_KEY, GROQ_API_KEY, ...) and use `failover.Gateway.from_file('failover.yaml')`."
    )


def main(runner: Callable[[Awaitable[list[DemoRun]]], list[DemoRun]] | None = None) -> int:
    """Entry point of ``failover demo``."""
    console = Console()
    console.print(
        "[bold]failover demo[/]: three mock providers on 127.0.0.1 "
        + ", ".join(f"{name} ({profile})" for name, profile in PROVIDERS)
        + f"; route '{ROUTE}' hedges after 0.5 s, deadline 3 s.\n"
    )
    runs = asyncio.run(run_demo(console=console))
    _summary(console, runs)
    return 0
