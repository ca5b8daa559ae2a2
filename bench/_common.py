"""Helpers shared by the library-driven benchmarks (``bench/tail.py``, ``bench/availability.py``).

They drive the real :class:`failover.Gateway` (the library, not the HTTP server) against
in-process :class:`failover.mock_upstream.MockUpstream` servers on 127.0.0.1: a closed loop of
``concurrency`` workers sends ``count`` requests and times each one from the caller's side.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from failover import Gateway
from failover.errors import FailoverError

MESSAGES = [{"role": "user", "content": "Say hello in five words"}]

# What a benchmark gateway leaves out: no request log, no alert lines, no start-up probe, so
# that the figures are the policy's and the output is the table.
QUIET: dict[str, Any] = {
    "store": {"url": "none"},
    "alerts": [],
    "health": {"check_on_startup": False},
}


def deployment(url: str, **options: Any) -> dict[str, Any]:
    """An openai-compatible deployment of the mock at ``url`` (its ``/v1`` base URL)."""
    return {
        "provider": "openai-compatible",
        "model": "mock-model",
        "api_base": url,
        "api_key": "bench-key",
        **options,
    }


@dataclass
class Sample:
    """One request as the caller saw it."""

    seconds: float
    ok: bool  # an answer from a deployment (not an error, not the default response)
    attempts: int  # upstream requests it started (losers and hedges included)
    deployment: str | None = None


@dataclass
class Outcome:
    """All requests of one run."""

    label: str
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def success_rate(self) -> float:
        return sum(s.ok for s in self.samples) / self.count if self.samples else 0.0

    @property
    def extra_upstream(self) -> float:
        """Upstream requests beyond the first of each request, as a share of requests."""
        if not self.samples:
            return 0.0
        return sum(max(0, s.attempts - 1) for s in self.samples) / self.count

    def latencies(self, *, ok_only: bool = False) -> list[float]:
        """Sorted latencies in seconds."""
        return sorted(s.seconds for s in self.samples if s.ok or not ok_only)

    def quantile(self, q: float, *, ok_only: bool = False) -> float:
        return quantile(self.latencies(ok_only=ok_only), q)


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted ``values`` (NaN without any)."""
    if not values:
        return math.nan
    return values[min(len(values), max(1, math.ceil(q * len(values)))) - 1]


async def drive(
    gateway: Gateway,
    route: str,
    count: int | None,
    concurrency: int,
    *,
    label: str,
    seconds: float | None = None,
) -> Outcome:
    """Send ``count`` requests over ``route`` (or as many as fit in ``seconds``), ``concurrency``
    at a time; time each one from the caller's side."""
    outcome = Outcome(label)
    sent = 0
    clock = time.perf_counter
    began = clock()
    stop_at = None if seconds is None else began + seconds

    def more() -> bool:
        if count is not None and sent >= count:
            return False
        return stop_at is None or clock() < stop_at

    async def worker() -> None:
        nonlocal sent
        while more():
            sent += 1
            start = clock()
            try:
                result = await gateway.chat(route, MESSAGES)
            except FailoverError as error:
                attempts = len(getattr(error, "errors", ()) or ())
                outcome.samples.append(Sample(clock() - start, False, attempts))
                continue
            outcome.samples.append(
                Sample(
                    clock() - start,
                    not result.degraded,
                    len(result.attempts),
                    result.deployment,
                )
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    outcome.seconds = clock() - began
    return outcome


async def paced(
    gateway: Gateway,
    route: str,
    rate: float,
    *,
    label: str,
    count: int | None = None,
    seconds: float | None = None,
) -> Outcome:
    """Start ``rate`` requests per second over ``route`` (open loop: arrivals do not wait for
    answers, so a fast failure does not bring the next request sooner), ``count`` of them or for
    ``seconds``; time each one."""
    outcome = Outcome(label)
    clock = time.perf_counter
    began = clock()
    running: set[asyncio.Task[None]] = set()

    async def one() -> None:
        start = clock()
        try:
            result = await gateway.chat(route, MESSAGES)
        except FailoverError as error:
            attempts = len(getattr(error, "errors", ()) or ())
            outcome.samples.append(Sample(clock() - start, False, attempts))
            return
        outcome.samples.append(
            Sample(clock() - start, not result.degraded, len(result.attempts), result.deployment)
        )

    sent = 0
    while count is None or sent < count:
        due = began + sent / rate
        if seconds is not None and due >= began + seconds:
            break
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(one())
        running.add(task)
        task.add_done_callback(running.discard)
        sent += 1
    await asyncio.gather(*running)
    outcome.seconds = clock() - began
    return outcome


def ms(seconds: float) -> str:
    """Milliseconds with a precision that suits the size."""
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def use_uvloop() -> None:
    """Run on uvloop, as the gateway does in production, when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def gateway_config(
    deployments: Mapping[str, Mapping[str, Any]], routes: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A quiet gateway config of ``deployments`` and ``routes``."""
    return {**QUIET, "deployments": dict(deployments), "routes": dict(routes)}
