"""What shared health costs a request: round trips and microseconds, RedisHealth vs MemoryHealth.

    .venv/bin/python bench/redis_health.py [--url redis://127.0.0.1:6379/0] [--requests 5000]

Each "request" is the engine's hot path for a first attempt that succeeds: ``plan`` over a route of
three targets, ``admit`` of the first, ``report`` of its success. It is timed call by call, one
request at a time (latency), then with 64 requests in flight (throughput), on:

- ``memory``: MemoryHealth, the floor;
- ``redis``: RedisHealth on the given Redis (keys under a prefix of this run's own, deleted after);
- ``redis, degraded``: RedisHealth with Redis unreachable (served from its local records);

plus the half-open ``admit`` (it takes the probe lease in Redis, one round trip) and ``status``.
Round trips are counted by the store, so they are exact, not estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from failover.clock import LoopClock
from failover.config import DeploymentConfig, HealthConfig
from failover.errors import ErrorClass
from failover.health.base import Report
from failover.health.memory import MemoryHealth
from failover.state import RedisHealth

TARGETS = ["primary", "secondary", "tertiary"]
DEPLOYMENTS = {
    name: DeploymentConfig(provider="openai", model="m", api_key="sk-bench") for name in TARGETS
}
CONFIG = HealthConfig(failure_threshold=1, recovery_seconds=0.001, max_recovery_seconds=0.001)

Backend = MemoryHealth | RedisHealth


async def one_request(health: Backend, timings: dict[str, list[float]] | None = None) -> None:
    """plan, admit, report: the calls of a request whose first attempt succeeds."""
    t0 = time.perf_counter()
    plan = await health.plan(TARGETS)
    t1 = time.perf_counter()
    admission = await health.admit(plan.available[0])
    t2 = time.perf_counter()
    assert admission is not None
    await health.report(admission, Report(latency=0.2))
    t3 = time.perf_counter()
    if timings is not None:
        timings["plan"].append(t1 - t0)
        timings["admit"].append(t2 - t1)
        timings["report"].append(t3 - t2)


def micros(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e6
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1e6
    return f"{p50:7.1f} / {p99:7.1f}"


async def measure(name: str, health: Backend, requests: int) -> None:
    for _ in range(200):  # warm up: connections opened, scripts loaded
        await one_request(health)
    store = health.store if isinstance(health, RedisHealth) else None
    trips = store.round_trips if store else 0
    timings: dict[str, list[float]] = {"plan": [], "admit": [], "report": []}
    for _ in range(requests):
        await one_request(health, timings)
    per_request = (store.round_trips - trips) / requests if store else 0.0

    started = time.perf_counter()
    in_flight = 64
    rounds = max(1, requests // in_flight)
    for _ in range(rounds):
        await asyncio.gather(*(one_request(health) for _ in range(in_flight)))
    rate = rounds * in_flight / (time.perf_counter() - started)

    row = " | ".join(micros(timings[call]) for call in ("plan", "admit", "report"))
    print(f"{name:17} | {per_request:11.2f} | {row} | {rate:9.0f}")


async def timed(call: Callable[[], Awaitable[object]], repeat: int = 2000) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    return samples


async def half_open_admit(health: RedisHealth, repeat: int = 2000) -> None:
    """Open the circuit with a tiny break, then time each probe admission (and its release)."""
    samples = []
    trips = 0
    for _ in range(repeat):
        admission = await health.admit("primary")
        if admission is not None:
            await health.report(admission, Report(ErrorClass.SERVER_ERROR))
        await asyncio.sleep(0.002)  # the 1 ms break ends
        before = health.store.round_trips
        t0 = time.perf_counter()
        probe = await health.admit("primary")
        samples.append(time.perf_counter() - t0)
        trips += health.store.round_trips - before
        assert probe is not None
        assert probe.probe
        await health.report(probe, Report())
    print(f"half-open admit (probe lease): {micros(samples)} us p50/p99, {trips / repeat:.2f} RT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    prefix = f"failover-bench:{uuid.uuid4().hex[:8]}:"
    clock = LoopClock()

    print(f"{args.requests} sequential requests, then {args.requests} with 64 in flight")
    print(
        f"{'backend':17} | {'RT/request':11} | {'plan us p50/p99':17} | "
        f"{'admit us p50/p99':17} | {'report us p50/p99':17} | {'req/s @64':9}"
    )
    await measure("memory", MemoryHealth(CONFIG, DEPLOYMENTS, clock), args.requests)
    shared = RedisHealth(CONFIG, DEPLOYMENTS, clock, url=args.url, key_prefix=prefix)
    down = RedisHealth(
        CONFIG, DEPLOYMENTS, clock, url=f"redis://127.0.0.1:{free_port()}/0", retry_seconds=3600
    )
    try:
        await measure("redis", shared, args.requests)
        await measure("redis, degraded", down, args.requests)
        assert not shared.degraded
        assert down.degraded
        await half_open_admit(shared)
        status = await timed(shared.status, 1000)
        print(f"status() of 3 deployments:     {micros(status)} us p50/p99, 1 RT")
    finally:
        await shared.aclose()
        await down.aclose()
        client = redis.Redis.from_url(args.url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
