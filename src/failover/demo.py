"""``failover demo``: failover at work on three mock providers, with no key and no network.

In one process it starts three :class:`~failover.mock_upstream.MockUpstream` servers on loopback
(a heavy-tailed primary that also fails 5% of its requests, a rate-limited second, a flaky
third), the real HTTP gateway in front of them with a hedged route, and drives a few hundred
requests through the gateway's OpenAI-compatible API. Part-way through, the primary goes down
for a while and comes back. A live table shows what the gateway reports (``/v1/status``,
``/metrics``, the ``x-failover-*`` answer headers). Then the same load, with the same outage, goes
to the primary alone, and the two runs are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from failover.check.render import status_table
from failover.gateway import Gateway
from failover.mock_upstream import MockUpstream
from failover.server import serving

__all__ = ["DemoRun", "main", "run_demo"]

# name, profile, changes to the profile
PROVIDERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("primary", "heavy-tail", {"error_rate": 0.05, "error_status": "500"}),
    ("secondary", "rate-limited", {}),
    ("tertiary", "flaky", {}),
)
PRIMARY = PROVIDERS[0][0]
ROUTE = "demo"
DEFAULT_TEXT = "Sorry, the assistant is busy; please try again."
OUTAGE = (0.4, 0.65)  # the primary is down for this share of the run
BODY = orjson.dumps({"model": ROUTE, "messages": [{"role": "user", "content": "Say hello."}]})
_HEDGES = re.compile(rb'^failover_hedges_total\{[^}]*route="demo"[^}]*\} ([0-9.e+]+)$', re.M)


@dataclass
class DemoRun:
    """What one load run saw: answers by deployment, failures and latencies."""

    label: str
    total: int
    latencies: list[float] = field(default_factory=list)
    answered_by: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    degraded: int = 0
    hedges: int = 0
    attempts: int = 0

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def answered(self) -> int:
        return self.done - self.failed - self.degraded

    @property
    def success_rate(self) -> float:
        return self.answered / self.done if self.done else 0.0

    @property
    def fallbacks(self) -> int:
        return self.answered - self.answered_by[PRIMARY]

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _config(urls: dict[str, str], store: str) -> dict[str, Any]:
    return {
        "store": {"url": store},
        "health": {
            "failure_threshold": 3,
            "recovery_seconds": 1,
            "max_recovery_seconds": 4,
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
                "targets": [name for name, _, _ in PROVIDERS],
                "hedge_after": 0.5,
                "deadline": 3.0,
                "default_response": DEFAULT_TEXT,
                "retry": {"backoff": 0.05, "max_backoff": 0.5},
            }
        },
    }


class _Outage:
    """Takes the primary down for the middle of a run, then brings it back."""

    def __init__(self, primary: MockUpstream, total: int) -> None:
        self._primary = primary
        self._down_at, self._up_at = (int(total * share) for share in OUTAGE)
        self._normal = primary.profile

    def at(self, index: int) -> None:
        if index == self._down_at:
            self._primary.set_profile("down")
        elif index == self._up_at:
            self._primary.set_profile(self._normal)


async def _drive(
    session: aiohttp.ClientSession,
    url: str,
    run: DemoRun,
    outage: _Outage,
    concurrency: int,
    refresh: Callable[[], None],
) -> None:
    indices = iter(range(run.total))

    async def one() -> None:
        started = time.perf_counter()
        try:
            async with session.post(
                url, data=BODY, headers={"content-type": "application/json"}
            ) as answer:
                await answer.read()
                headers = answer.headers
                run.attempts += int(headers.get("x-failover-attempts", "1"))
                if answer.status != 200:
                    run.failed += 1
                elif headers.get("x-failover-degraded") == "true":
                    run.degraded += 1
                else:
                    run.answered_by[headers.get("x-failover-deployment", PRIMARY)] += 1
        except aiohttp.ClientError:
            run.failed += 1
        run.latencies.append(time.perf_counter() - started)
        refresh()

    async def worker() -> None:
        for index in indices:
            outage.at(index)
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _view(status: list[dict[str, Any]], runs: list[DemoRun]) -> Group:
    traffic = Table(title="requests", title_justify="left")
    traffic.add_column("")
    for run in runs:
        traffic.add_column(run.label, justify="right")
    rows: list[tuple[str, Callable[[DemoRun], str]]] = [
        ("done", lambda r: f"{r.done}/{r.total}"),
        ("answered by a provider", lambda r: f"{r.success_rate:.1%}"),
        ("degraded (default answer)", lambda r: str(r.degraded)),
        ("failed (error status)", lambda r: str(r.failed)),
        ("hedges started", lambda r: str(r.hedges)),
        ("answered by a fallback", lambda r: str(r.fallbacks)),
        ("upstream attempts", lambda r: str(r.attempts)),
        ("p50 ms", lambda r: f"{r.percentile(0.5) * 1000:.0f}"),
        ("p99 ms", lambda r: f"{r.percentile(0.99) * 1000:.0f}"),
    ]
    for label, cell in rows:
        traffic.add_row(label, *(cell(run) for run in runs))
    for name, _, _ in PROVIDERS:
        traffic.add_row(f"answers from {name}", *(str(run.answered_by[name]) for run in runs))
    return Group(status_table(status), traffic)


@contextlib.asynccontextmanager
async def _upstreams(seed: int) -> AsyncIterator[dict[str, MockUpstream]]:
    async with contextlib.AsyncExitStack() as stack:
        mocks = {}
        for offset, (name, profile, changes) in enumerate(PROVIDERS):
            mock = await stack.enter_async_context(
                MockUpstream(profile, name=name, seed=seed + offset)
            )
            if changes:
                mock.set_profile(**changes)
            mocks[name] = mock
        yield mocks


async def _poll(
    session: aiohttp.ClientSession, origin: str, run: DemoRun, status: list[dict[str, Any]]
) -> None:
    """Keep the provider table and the hedge count fresh from the gateway's own endpoints."""
    while True:
        async with session.get(f"{origin}/v1/status") as answer:
            status[:] = (await answer.json())["data"]
        async with session.get(f"{origin}/metrics") as answer:
            run.hedges = int(sum(float(v) for v in _HEDGES.findall(await answer.read())))
        await asyncio.sleep(0.2)


async def run_demo(
    *,
    requests: int = 400,
    concurrency: int = 16,
    seed: int = 7,
    store: str = "sqlite:///failover.db",
    console: Console | None = None,
) -> list[DemoRun]:
    """Run the demo; returns its two runs: through the gateway, then the primary alone."""
    console = console or Console()
    runs = [DemoRun("through failover", requests), DemoRun("primary alone", requests)]
    status: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    async with (
        _upstreams(seed) as mocks,
        serving(Gateway.from_dict(_config({n: m.url for n, m in mocks.items()}, store))) as gw,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        with Live(_view(status, runs), console=console, refresh_per_second=8) as live:

            def refresh() -> None:
                live.update(_view(status, runs))

            poller = asyncio.create_task(_poll(session, gw.origin, runs[0], status))
            try:
                await _drive(
                    session,
                    f"{gw.url}/chat/completions",
                    runs[0],
                    _Outage(mocks[PRIMARY], requests),
                    concurrency,
                    refresh,
                )
                await asyncio.sleep(0.3)  # one more poll: the final figures
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            await _drive(
                session,
                f"{mocks[PRIMARY].url}/chat/completions",
                runs[1],
                _Outage(mocks[PRIMARY], requests),
                concurrency,
                refresh,
            )
            refresh()
    return runs


def _summary(console: Console, runs: list[DemoRun]) -> None:
    through, alone = runs
    extra = through.attempts - through.done
    console.print()
    console.print(
        f"[bold]Through failover[/]: {through.success_rate:.1%} answered by a provider "
        f"({through.degraded} default answers, {through.failed} errors), "
        f"p99 {through.percentile(0.99) * 1000:.0f} ms, "
        f"{extra} extra upstream attempts ({extra / max(1, through.done):.0%})."
    )
    console.print(
        f"[bold]Primary alone[/]:    {alone.success_rate:.1%} answered, "
        f"p99 {alone.percentile(0.99) * 1000:.0f} ms."
    )
    console.print(
        "\nEvery request is in the request log: `.venv/bin/failover stats` reports it.\n"
        "Point failover at real providers: write a failover.yaml (README.md shows one), set your "
        "keys (OPENAI_API_KEY, GROQ_API_KEY, ...), run `.venv/bin/failover serve --config "
        "failover.yaml` and use http://127.0.0.1:4000/v1 as the openai SDK's base_url."
    )


def main() -> int:
    """Entry point of ``failover demo``."""
    console = Console()
    console.print(
        "[bold]failover demo[/]: three mock providers on 127.0.0.1: "
        + ", ".join(f"{name} ({profile})" for name, profile, _ in PROVIDERS)
        + f"; route '{ROUTE}' hedges after 0.5 s, deadline 3 s; the primary goes down for "
        f"{OUTAGE[0]:.0%}-{OUTAGE[1]:.0%} of the run.\n"
    )
    runs = asyncio.run(run_demo(console=console))
    _summary(console, runs)
    return 0
