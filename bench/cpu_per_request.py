"""CPU time per request of `failover serve`, for one or more source trees, alternating.

    .venv/bin/python bench/cpu_per_request.py [--rounds 3] [--seconds 8] NAME=SRC_DIR[:nostore] ...
    .venv/bin/python bench/cpu_per_request.py --smoke          # the working tree, no wrk

Requests/s on shared vCPUs swing by ±30% between runs; the CPU time the gateway's process spends
per request moves by a few percent when variants alternate in one run. This is how each change
to the hot path was judged: give it the trees to compare (``git worktree add /tmp/base REV``),
e.g. ``base=/tmp/base head=.``; a tree's ``src`` goes first on ``PYTHONPATH``, so the same
interpreter and dependencies run every variant. ``:nostore`` turns the request log off.

Each run starts `failover serve` from the tree with ``overhead.py``'s production config (client
keys, request log on SQLite, metrics, health, log alerts, a route of two deployments), pinned to
core 0, in front of one healthy `failover mock-upstream`; wrk (one thread, 32 connections) and
the mock share core 1. After one checked answer and a 2 s warm-up, wrk runs ``--seconds`` and the
gateway's user + system CPU time (``/proc/PID/stat``, all its threads) is divided by the requests
wrk completed. Printed: each run, then the median per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import overhead
from mock_rate import mock_command, start_server, stop

HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(tree: Path, upstream: str, work: Path, *, store: bool) -> overhead.Running:
    """`failover serve` from ``tree``'s sources, pinned to core 0."""
    run_dir = Path(tempfile.mkdtemp(prefix="cpu-", dir=work))
    config = overhead.FAILOVER_CONFIG.format(
        db=run_dir / "failover.db",
        upstream=upstream,
        route=overhead.ROUTE,
        key=overhead.GATEWAY_KEY,
    )
    if not store:
        config = config.replace(f"url: sqlite:///{run_dir / 'failover.db'}", "url: none")
    (run_dir / "failover.yaml").write_text(config)
    port = overhead.free_port()
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONUNBUFFERED": "1"}
    argv = [*overhead.pin(0), sys.executable, "-m", "failover.cli", "serve"]
    argv += ["--config", str(run_dir / "failover.yaml"), "--port", str(port)]
    with (run_dir / "serve.log").open("w") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, text=True, cwd=run_dir
        )
    base = f"http://127.0.0.1:{port}"
    try:
        overhead.wait_ready(f"{base}/health", process)
    except BaseException:
        overhead.stop_group(process)
        raise
    return overhead.Running(f"{base}/v1/chat/completions", process, overhead.AUTH, run_dir)


def measure(running: overhead.Running, seconds: float, smoke: bool) -> tuple[float, float]:
    """Requests/s and CPU µs per request of one run."""
    assert running.process is not None
    overhead.check(running)
    if smoke:
        before = cpu_seconds(running.process.pid)
        result = asyncio.run(overhead.load_loop(running, seconds, 8))
    else:
        overhead.wrk(running, 32, 2)  # warm-up
        before = cpu_seconds(running.process.pid)
        result = overhead.wrk(running, 32, seconds)
    spent = cpu_seconds(running.process.pid) - before
    if result.errors or not result.requests:
        raise SystemExit(f"{result.errors} errors in {result.requests} requests")
    return result.rps, spent / result.requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--smoke", action="store_true", help="the working tree, briefly, no wrk")
    parser.add_argument("variants", nargs="*", help="NAME=SRC_DIR[:nostore]")
    args = parser.parse_args()
    if args.smoke:
        args.variants, args.rounds, args.seconds = [f"tree={HERE.parent}"], 1, 0.5
    variants: list[tuple[str, Path, bool]] = []
    for variant in args.variants:
        name, _, spec = variant.partition("=")
        tree, _, option = spec.partition(":")
        variants.append((name, Path(tree).resolve(), option != "nostore"))
    if not variants:
        parser.error("name at least one variant: NAME=SRC_DIR[:nostore]")

    upstream_process, upstream = start_server(mock_command(1))
    per_request: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    try:
        with tempfile.TemporaryDirectory(prefix="failover-cpu-") as work:
            print("| round | variant | req/s @32 | CPU µs/request |")
            print("| --- | --- | --- | --- |")
            for round_ in range(1, args.rounds + 1):
                for name, tree, store in variants:
                    running = start(tree, upstream, Path(work), store=store)
                    try:
                        rps, cpu = measure(running, args.seconds, args.smoke)
                    finally:
                        overhead.finish(running)
                    per_request[name].append(cpu)
                    print(f"| {round_} | {name} | {rps:,.0f} | {cpu:.1f} |", flush=True)
    finally:
        stop(upstream_process)
    print()
    for name, values in per_request.items():
        print(f"{name}: median {statistics.median(values):.1f} µs/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
