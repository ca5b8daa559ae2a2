"""What does a gateway cost? Requests/s, latency and memory of failover and other gateways.

    .venv/bin/python bench/overhead.py [--rounds 2] [--duration 10] [--only direct,failover,...]
    .venv/bin/python bench/overhead.py --smoke      # a few seconds, no wrk: does it work?

One instant upstream (``failover mock-upstream``, profile ``healthy``) serves every run. In the
same run, in alternating order (A B C D E, A B C D E, ...), wrk drives against it:

- ``direct``: the upstream itself;
- ``failover``: ``failover serve --config X`` with its default production config: client API
  keys on, request log on (SQLite), metrics on, health on (memory), log alerts, one sequential
  route ``mock-model`` of two deployments (both the mock; the second is never needed);
- ``aiohttp``: ``bench/aiohttp_proxy.py``, a bare aiohttp reverse proxy: the Python reference;
- ``litellm``: the LiteLLM proxy (one worker, a master key, no database), installed with
  ``pip install 'litellm[proxy]'`` into a throwaway venv under ``--work`` (default
  ``/tmp/failover-bench``), never a project dependency;
- ``portkey``: Portkey's gateway, ``npx @portkey-ai/gateway``, installed by npm into the same
  throwaway directory (its npm cache too).

A gateway that cannot be installed or started here is reported as such and skipped. Each run
starts the gateway afresh, pinned to core 0 (``taskset -c 0``); wrk (one thread) and the upstream
are pinned to core 1. It checks that one request comes back with the upstream's completion, warms
up for 2 s at 32 connections, measures ``--duration`` seconds at 32 connections, then at 1, then
reads the gateway's RSS (its process tree) and stops it. Figures: requests/s and p50/p90/p99 at
32 connections, p50/p99 at 1, the latency added over ``direct`` at 1 connection (p50, same
round), and RSS; then the issue's targets for failover, met or missed.

``--smoke`` runs direct, failover and aiohttp only, each for half a second with a small aiohttp
load loop instead of wrk, and fails unless every answer was the upstream's completion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from mock_rate import BODY, LoadResult, mock_command, pin, run_wrk, start_server, stop

TARGETS = ("direct", "failover", "aiohttp", "litellm", "portkey")
ROUTE = "mock-model"  # the failover route and the LiteLLM model share the mock's model name
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 120.0  # LiteLLM takes a while to import


class Unavailable(Exception):
    """This gateway cannot be installed or started here (the message says why)."""


@dataclass
class Running:
    """A gateway started for one run: where to send requests, and how to stop it."""

    url: str  # the full POST URL
    process: subprocess.Popen[str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    run_dir: Path | None = None  # removed once the run is over


@dataclass
class Figures:
    """One run of one target."""

    at32: LoadResult
    at1: LoadResult
    rss_mb: float | None


# -- starting each gateway ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until it answers at all (any status), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"exited with {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers; the status does not matter here
        except OSError:
            time.sleep(0.25)
    raise Unavailable(f"not answering {url} after {timeout:.0f}s")


def spawn(argv: list[str], log: Path, ready: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start ``argv`` pinned to core 0, its output to ``log``; return once ``ready`` answers."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [*pin(0), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group: npx leaves node running otherwise
        )
    try:
        wait_ready(ready, process)
    except BaseException:
        stop_group(process)
        raise
    return process


def stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the process and everything it started, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    try:
        leader = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        leader = False
    if not leader:  # started without a session of its own (the aiohttp proxy)
        stop(process)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent


GATEWAY_KEY = "sk-bench-gateway-key-0123456789"  # what clients present to the gateways
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}

FAILOVER_CONFIG = """\
server:
  host: 127.0.0.1
  api_keys: ["{key}"]
store:
  url: sqlite:///{db}
alerts:
  - kind: log
health:
  check_on_startup: false
deployments:
  primary:
    provider: openai-compatible
    model: mock-model
    api_base: {upstream}
    api_key: bench-key
  secondary:
    provider: openai-compatible
    model: mock-model
    api_base: {upstream}
    api_key: bench-key
routes:
  {route}:
    targets: [primary, secondary]
"""

LITELLM_CONFIG = """\
model_list:
  - model_name: {route}
    litellm_params:
      model: openai/mock-model
      api_base: {upstream}
      api_key: bench-key
general_settings:
  master_key: {key}
"""


def start_failover(upstream: str, work: Path) -> Running:
    run_dir = Path(tempfile.mkdtemp(prefix="failover-", dir=work))
    config = run_dir / "failover.yaml"
    config.write_text(
        FAILOVER_CONFIG.format(
            db=run_dir / "failover.db", upstream=upstream, route=ROUTE, key=GATEWAY_KEY
        )
    )
    port = free_port()
    argv = [str(VENV_BIN / "failover"), "serve", "--config", str(config), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    process = spawn(argv, run_dir / "serve.log", f"{base}/health")
    return Running(f"{base}/v1/chat/completions", process, AUTH, run_dir)


def start_aiohttp(upstream: str, work: Path) -> Running:
    argv = [*pin(0), sys.executable, str(HERE / "aiohttp_proxy.py"), "--upstream", upstream]
    process, url = start_server(argv)
    return Running(f"{url}/v1/chat/completions", process)


def install_litellm(work: Path) -> Path:
    """The throwaway venv's ``litellm`` command, installing it on first use."""
    venv = work / "litellm"
    command = venv / "bin" / "litellm"
    if command.exists():
        return command
    print("  installing litellm[proxy] into a throwaway venv (a minute or two) ...", flush=True)
    python = shutil.which("python3") or sys.executable
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(step[:3])} failed: {done.stderr.strip()[-300:]}")
    return command


def start_litellm(upstream: str, work: Path) -> Running:
    command = install_litellm(work)
    run_dir = Path(tempfile.mkdtemp(prefix="litellm-", dir=work))
    config = run_dir / "config.yaml"
    config.write_text(LITELLM_CONFIG.format(route=ROUTE, upstream=upstream, key=GATEWAY_KEY))
    port = free_port()
    argv = [str(command), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    base = f"http://127.0.0.1:{port}"
    process = spawn(argv, run_dir / "litellm.log", f"{base}/health/liveliness", cwd=run_dir)
    return Running(f"{base}/v1/chat/completions", process, AUTH, run_dir)


def install_portkey(work: Path) -> Path:
    """The throwaway npm prefix holding ``@portkey-ai/gateway``, installing it on first use."""
    prefix = work / "portkey"
    if (prefix / "node_modules" / "@portkey-ai" / "gateway").exists():
        return prefix
    if shutil.which("npm") is None:
        raise Unavailable("npm is not installed")
    print("  installing @portkey-ai/gateway with npm into a throwaway prefix ...", flush=True)
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "@portkey-ai/gateway"],
        cwd=prefix,
        capture_output=True,
        text=True,
        env={**os.environ, "npm_config_cache": str(work / "npm")},
    )
    if done.returncode != 0:
        raise Unavailable(f"npm install failed: {done.stderr.strip()[-300:]}")
    return prefix


def start_portkey(upstream: str, work: Path) -> Running:
    prefix = install_portkey(work)
    port = free_port()
    argv = ["npx", "--no-install", "@portkey-ai/gateway", f"--port={port}", "--headless"]
    base = f"http://127.0.0.1:{port}"
    process = spawn(argv, work / "portkey.log", f"{base}/", cwd=prefix)
    headers = {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream,
        "Authorization": "Bearer bench-key",
    }
    return Running(f"{base}/v1/chat/completions", process, headers)


def start(target: str, upstream: str, work: Path) -> Running:
    """Start ``target`` in front of ``upstream`` (its ``/v1`` base URL)."""
    if target == "direct":
        return Running(f"{upstream}/chat/completions")
    starters = {
        "failover": start_failover,
        "aiohttp": start_aiohttp,
        "litellm": start_litellm,
        "portkey": start_portkey,
    }
    if target == "aiohttp":
        return start_aiohttp(upstream.removesuffix("/v1"), work)
    return starters[target](upstream, work)


def finish(running: Running) -> None:
    if running.process is not None:
        stop_group(running.process)
    if running.run_dir is not None:
        shutil.rmtree(running.run_dir, ignore_errors=True)


# -- measuring ------------------------------------------------------------------------------


def check(running: Running) -> None:
    """One request must bring the upstream's completion back."""
    request = urllib.request.Request(
        running.url,
        data=json.dumps(BODY).encode(),
        headers={"Content-Type": "application/json", **running.headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    if b"Hello from" not in body:
        raise Unavailable(f"answered {body[:200]!r}")


def wrk(running: Running, connections: int, seconds: float) -> LoadResult:
    """wrk (one thread, core 1) against the running target, its figures read exactly."""
    return run_wrk(running.url, connections, seconds, core=1, headers=running.headers)


async def load_loop(running: Running, seconds: float, concurrency: int) -> LoadResult:
    """wrk's stand-in for --smoke: ``concurrency`` workers POSTing for ``seconds``; an answer
    counts only as a 200 carrying the upstream's completion."""
    latencies: list[float] = []
    errors = 0
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json", **running.headers}
    began = time.perf_counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() - began < seconds:
            start = time.perf_counter()
            async with session.post(running.url, data=payload, headers=headers) as response:
                ok = response.status == 200 and b"Hello from" in await response.read()
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(
        requests=len(latencies) + errors,
        seconds=time.perf_counter() - began,
        errors=errors,
        p50_ms=cuts[49] * 1000,
        p90_ms=cuts[89] * 1000,
        p99_ms=cuts[98] * 1000,
    )


def descendants(pid: int) -> Iterator[int]:
    """``pid`` and every process below it."""
    yield pid
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for child in children:
                yield from descendants(int(child))


def rss_mb(process: subprocess.Popen[str] | None) -> float | None:
    """Resident memory of ``process`` and its children, in MB (None for ``direct``)."""
    if process is None:
        return None
    total_kb = 0
    for pid in descendants(process.pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def measure(target: str, upstream: str, args: argparse.Namespace) -> Figures:
    running = start(target, upstream, args.work)
    try:
        check(running)
        if args.smoke:
            at32 = asyncio.run(load_loop(running, 0.5, concurrency=8))
            at1 = asyncio.run(load_loop(running, 0.3, concurrency=1))
        else:
            wrk(running, 32, 2)  # warm-up
            at32 = wrk(running, 32, args.duration)
            at1 = wrk(running, 1, args.duration)
        return Figures(at32, at1, rss_mb(running.process))
    finally:
        finish(running)


# -- reporting ------------------------------------------------------------------------------


def summary(results: dict[str, list[Figures]]) -> str:
    direct = results.get("direct", [])
    lines = [
        "| target | req/s @32 | p50 ms | p90 ms | p99 ms | p50 ms @1 | p99 ms @1 "
        "| added p50 ms @1 | RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for target, runs in results.items():
        if not runs:
            continue
        added = "-"
        if direct and target != "direct":
            pairs = zip(runs, direct, strict=False)
            added = f"{statistics.median(r.at1.p50_ms - d.at1.p50_ms for r, d in pairs):.2f}"
        rss = [r.rss_mb for r in runs if r.rss_mb is not None]
        lines.append(
            f"| {target} | {statistics.mean(r.at32.rps for r in runs):,.0f} "
            f"| {statistics.median(r.at32.p50_ms for r in runs):.2f} "
            f"| {statistics.median(r.at32.p90_ms for r in runs):.2f} "
            f"| {statistics.median(r.at32.p99_ms for r in runs):.2f} "
            f"| {statistics.median(r.at1.p50_ms for r in runs):.2f} "
            f"| {statistics.median(r.at1.p99_ms for r in runs):.2f} "
            f"| {added} | {max(rss):.0f} |"
            if rss
            else f"| {target} | {statistics.mean(r.at32.rps for r in runs):,.0f} "
            f"| {statistics.median(r.at32.p50_ms for r in runs):.2f} "
            f"| {statistics.median(r.at32.p90_ms for r in runs):.2f} "
            f"| {statistics.median(r.at32.p99_ms for r in runs):.2f} "
            f"| {statistics.median(r.at1.p50_ms for r in runs):.2f} "
            f"| {statistics.median(r.at1.p99_ms for r in runs):.2f} | {added} | - |"
        )
    return "\n".join(lines)


def verdicts(results: dict[str, list[Figures]]) -> list[str]:
    """The issue's targets for failover, each met or missed, with the figures."""
    ours = results.get("failover")
    if not ours:
        return []

    def rps(target: str) -> float | None:
        runs = results.get(target)
        return statistics.mean(r.at32.rps for r in runs) if runs else None

    mine = rps("failover") or 0.0
    lines = []
    for target, share, label in (("aiohttp", 0.75, ">= 75% of"), ("litellm", 30, ">= 30x")):
        theirs = rps(target)
        if theirs:
            ratio = mine / theirs
            ok = ratio >= share
            shown = f"{ratio:.0%}" if share < 1 else f"{ratio:.1f}x"
            lines.append(f"req/s {label} {target}: {shown} ({'met' if ok else 'MISSED'})")
    direct = results.get("direct")
    if direct:
        added = statistics.median(
            r.at1.p50_ms - d.at1.p50_ms for r, d in zip(ours, direct, strict=False)
        )
        ok = added < 0.4
        lines.append(
            f"added p50 at 1 connection < 0.4 ms: {added:.2f} ms ({'met' if ok else 'MISSED'})"
        )
    rss = max((r.rss_mb or 0.0) for r in ours)
    lines.append(f"RSS < 100 MB: {rss:.0f} MB ({'met' if rss < 100 else 'MISSED'})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="ABAB rounds (each target once)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/failover-bench"))
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no wrk needed")
    args = parser.parse_args()
    targets = [t for t in args.only.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.smoke:
        targets = [t for t in targets if t in ("direct", "failover", "aiohttp")]
        args.rounds = 1
    elif shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    args.work.mkdir(parents=True, exist_ok=True)

    upstream_process, upstream = start_server(mock_command(1))
    results: dict[str, list[Figures]] = {t: [] for t in targets}
    skipped: dict[str, str] = {}
    try:
        print("| round | target | req/s @32 | p50 ms | p99 ms | p50 ms @1 | p99 ms @1 | RSS MB |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for round_ in range(1, args.rounds + 1):
            for target in targets:
                if target in skipped:
                    continue
                try:
                    figures = measure(target, upstream, args)
                except (Unavailable, OSError, subprocess.SubprocessError) as error:
                    skipped[target] = str(error)
                    print(f"| {round_} | {target} | unavailable: {error} |", flush=True)
                    continue
                results[target].append(figures)
                rss = "-" if figures.rss_mb is None else f"{figures.rss_mb:.0f}"
                print(
                    f"| {round_} | {target} | {figures.at32.rps:,.0f} | {figures.at32.p50_ms:.2f} "
                    f"| {figures.at32.p99_ms:.2f} | {figures.at1.p50_ms:.2f} "
                    f"| {figures.at1.p99_ms:.2f} | {rss} |",
                    flush=True,
                )
    finally:
        stop(upstream_process)

    print()
    print(summary(results))
    print()
    for line in verdicts(results):
        print(line)
    for target, why in skipped.items():
        print(f"{target}: not measured: {why}")
    bad = [
        t for t, runs in results.items() if any(r.at32.errors or not r.at32.requests for r in runs)
    ]
    if bad or (args.smoke and skipped):
        print(f"FAILED: errors or no answers through {', '.join(bad + list(skipped))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
