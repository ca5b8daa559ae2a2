"""Which upstream HTTP client should the gateway use? A micro-benchmark.

    .venv/bin/python bench/http_client.py [--duration 10] [--rounds 2] [--connections 32]
    .venv/bin/python bench/http_client.py --smoke      # a few seconds, no wrk: does it work?

A minimal reverse proxy forwards ``POST /v1/chat/completions`` to an instant upstream (a healthy
``failover mock-upstream``) through one of three clients, each with a pooled keep-alive
connection pool of the same size: ``aiohttp.ClientSession``, ``httpx.AsyncClient``, and
failover's own (``wire``: :class:`failover.providers.http.HttpClient` and an ``Endpoint``, the
path every upstream call of the gateway takes). The proxy runs alone on core 0 (uvloop, like the
gateway); wrk (one thread, 32 keep-alive connections) and the upstream share core 1, so the
proxy's core is the bottleneck and its client's cost shows. Besides requests/s, the proxy's CPU
time per request is read from ``/proc`` (steadier than requests/s on shared vCPUs); the server
half is the same aiohttp.web in all three, so the differences are the clients'. Runs alternate
(aiohttp, httpx, wire, aiohttp, ...) so that drift hits all alike, and each run starts a fresh
proxy, warmed up before it is measured.

``--smoke`` drives each proxy for half a second with a small aiohttp load loop instead of wrk
and fails (exit 1) unless every answer was a 200 carrying the upstream's completion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Protocol

import aiohttp
import httpx
from aiohttp import web

from mock_rate import BODY, LoadResult, mock_command, pin, run_wrk, start_server, stop

CLIENTS = ("aiohttp", "httpx", "wire")
_POOL = 64  # connections to the upstream: above wrk's 32 so neither client queues for one
_HEADERS = {"Content-Type": "application/json"}
_PAYLOAD = (
    b'{"model":"mock-model","messages":[{"role":"user","content":"Say hello in five words"}]}'
)


# -- the proxy (runs in its own process: `--proxy KIND --upstream URL`) -----------------------


class Forwarder(Protocol):
    async def forward(self, body: bytes) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpForwarder:
    """Forwards through one pooled ``aiohttp.ClientSession``."""

    def __init__(self, url: str) -> None:
        self._url = url
        connector = aiohttp.TCPConnector(limit=_POOL, limit_per_host=_POOL)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        )

    async def forward(self, body: bytes) -> tuple[int, bytes]:
        async with self._session.post(self._url, data=body, headers=_HEADERS) as response:
            return response.status, await response.read()

    async def aclose(self) -> None:
        await self._session.close()


class HttpxForwarder:
    """Forwards through one pooled ``httpx.AsyncClient``."""

    def __init__(self, url: str) -> None:
        self._url = url
        limits = httpx.Limits(max_connections=_POOL, max_keepalive_connections=_POOL)
        self._client = httpx.AsyncClient(limits=limits, timeout=30)

    async def forward(self, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(self._url, content=body, headers=_HEADERS)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


class WireForwarder:
    """Forwards through failover's own client: an ``HttpClient`` and one deployment's
    ``Endpoint``, as every upstream call of the gateway does."""

    def __init__(self, upstream: str) -> None:
        from failover.config import DeploymentConfig, Provider
        from failover.providers.http import HttpClient

        self._http = HttpClient(limit=_POOL)
        deployment = DeploymentConfig(
            name="bench", provider=Provider.OPENAI_COMPATIBLE, model="m", api_base=upstream
        )
        self._endpoint = self._http.endpoint(deployment, {})
        self._target = self._endpoint.target("/chat/completions")

    async def forward(self, body: bytes) -> tuple[int, bytes]:
        async with self._endpoint.request("POST", self._target, body) as response:
            return response.status, await response.read()

    async def aclose(self) -> None:
        await self._http.aclose()


async def serve_proxy(kind: str, upstream: str) -> None:
    """Serve the proxy on a free port until SIGTERM; print its URL first."""
    target = f"{upstream}/chat/completions"
    forwarder: Forwarder
    if kind == "aiohttp":
        forwarder = AiohttpForwarder(target)
    elif kind == "httpx":
        forwarder = HttpxForwarder(target)
    else:
        forwarder = WireForwarder(upstream)

    async def handle(request: web.Request) -> web.Response:
        status, body = await forwarder.forward(await request.read())
        return web.Response(status=status, body=body, headers=_HEADERS)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    print(f"proxy {kind} listening on http://127.0.0.1:{port}/v1", flush=True)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
        await forwarder.aclose()


def run_proxy(kind: str, upstream: str) -> None:
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # uvloop is a dependency off Windows
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve_proxy(kind, upstream))


# -- the driver -------------------------------------------------------------------------------


async def load_loop(url: str, seconds: float, concurrency: int = 8) -> LoadResult:
    """wrk's stand-in for --smoke: ``concurrency`` workers POSTing for ``seconds``; an answer
    counts only as a 200 carrying the mock's completion."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while loop.time() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(url, data=_PAYLOAD, headers=_HEADERS) as response:
                    ok = response.status == 200 and b"Hello from" in await response.read()
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    started = loop.time()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = loop.time() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(
        requests=len(latencies) + errors,
        seconds=elapsed,
        errors=errors,
        p50_ms=cuts[49] * 1000,
        p90_ms=cuts[89] * 1000,
        p99_ms=cuts[98] * 1000,
    )


def check(url: str) -> None:
    """One request through the proxy must bring the upstream's completion back."""
    request = urllib.request.Request(
        f"{url}/chat/completions", data=_PAYLOAD, headers=_HEADERS, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    if b"Hello from" not in body:
        raise RuntimeError(f"the proxy at {url} answered {body[:200]!r}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, upstream: str, args: argparse.Namespace) -> tuple[LoadResult, float]:
    """Start a fresh proxy of ``kind`` on core 0, warm it up, measure it, stop it; its figures
    and its CPU time per request (µs)."""
    script = str(Path(__file__).resolve())
    argv = [*pin(0), sys.executable, script, "--proxy", kind, "--upstream", upstream]
    proxy, url = start_server(argv)
    try:
        check(url)
        endpoint = f"{url}/chat/completions"
        if args.smoke:
            before = cpu_seconds(proxy.pid)
            result = asyncio.run(load_loop(endpoint, args.duration))
        else:
            run_wrk(endpoint, args.connections, 2, core=1, body=BODY)  # warm-up
            before = cpu_seconds(proxy.pid)
            result = run_wrk(endpoint, args.connections, args.duration, core=1, body=BODY)
        spent = cpu_seconds(proxy.pid) - before
        return result, spent / max(result.requests, 1) * 1e6
    finally:
        stop(proxy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="ABAB rounds (each client once)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no wrk needed")
    parser.add_argument("--proxy", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        run_proxy(args.proxy, args.upstream)
        return 0
    if args.smoke:
        args.duration = 0.5

    upstream_process, upstream = start_server(mock_command(1))
    results: dict[str, list[LoadResult]] = {kind: [] for kind in CLIENTS}
    cpu: dict[str, list[float]] = {kind: [] for kind in CLIENTS}
    try:
        print("| run | client | req/s | p50 ms | p90 ms | p99 ms | errors | CPU µs/request |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for round_ in range(1, args.rounds + 1):
            for kind in CLIENTS:
                result, per_request = measure(kind, upstream, args)
                results[kind].append(result)
                cpu[kind].append(per_request)
                print(f"{result.row(f'{round_} | {kind}')} {per_request:.0f} |", flush=True)
    finally:
        stop(upstream_process)

    print()
    print("| client | mean req/s | median p50 ms | median p99 ms | median CPU µs/request |")
    print("| --- | --- | --- | --- | --- |")
    for kind, runs in results.items():
        rps = statistics.mean(r.rps for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        per_request = statistics.median(cpu[kind])
        print(f"| {kind} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {per_request:.0f} |")
    failed = [
        kind for kind, runs in results.items() if any(r.errors or not r.requests for r in runs)
    ]
    if failed:
        print(f"FAILED: errors or no answers through {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
