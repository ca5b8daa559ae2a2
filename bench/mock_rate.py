"""How many requests per second `failover mock-upstream` serves on one core, measured with wrk.

    .venv/bin/python bench/mock_rate.py [--duration 10] [--connections 32] [--stream]

The mock runs pinned to core 0 (``taskset -c 0``), wrk to core 1 with one thread and
keep-alive connections, POSTing a small chat completion through a lua script. Needs wrk
(``apt-get install -y wrk``). The helpers here (pinning, starting a server and reading the URL it
prints, running wrk and reading its figures) are shared with ``bench/http_client.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BODY: dict[str, object] = {
    "model": "mock-model",
    "messages": [{"role": "user", "content": "Say hello in five words"}],
}

# wrk's `done` hook prints one JSON line, so the figures are read exactly rather than scraped
# from its human-readable report.
_LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"errors\\":%%d,\\"non2xx\\":%%d," ..
    "\\"p50_us\\":%%d,\\"p90_us\\":%%d,\\"p99_us\\":%%d,\\"mean_us\\":%%f}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One load run's figures."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def row(self, label: str) -> str:
        """A markdown table row: label, req/s, p50, p90, p99, errors."""
        return (
            f"| {label} | {self.rps:,.0f} | {self.p50_ms:.2f} | {self.p90_ms:.2f} "
            f"| {self.p99_ms:.2f} | {self.errors} |"
        )


def pin(core: int) -> list[str]:
    """The ``taskset -c CORE`` prefix, or nothing where taskset or the core is missing."""
    if shutil.which("taskset") and core < (os.cpu_count() or 1):
        return ["taskset", "-c", str(core)]
    return []


def start_server(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server that prints ``... listening on URL`` first; return it and the URL."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        stop(process)
        raise RuntimeError(f"{' '.join(argv)} did not start: {line!r}")
    return process, line.split()[-1]


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def mock_command(core: int, *extra: str) -> list[str]:
    """The command of a healthy mock upstream on a free port, pinned to ``core``."""
    cli = [sys.executable, "-m", "failover.cli", "mock-upstream", "--port", "0"]
    return [*pin(core), *cli, *extra]


def wrk_command(url: str, script: Path, connections: int, seconds: float, core: int) -> list[str]:
    """The wrk command line: one thread, keep-alive, pinned to ``core``."""
    duration = f"{max(1, round(seconds))}s"
    return [*pin(core), "wrk", "-t1", f"-c{connections}", f"-d{duration}", "-s", str(script), url]


def run_wrk(
    url: str,
    connections: int,
    seconds: float,
    core: int,
    body: Mapping[str, object] | None = None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Drive ``url`` with wrk (sending ``headers`` too) and read its figures."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        lua = _LUA % {"body": json.dumps(body or BODY)}
        lua += "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
        script.write_text(lua)
        argv = wrk_command(url, script, connections, seconds, core)
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"] + data["non2xx"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stream", action="store_true", help="also measure streamed requests")
    args = parser.parse_args()

    server, url = start_server(mock_command(0))
    endpoint = f"{url}/chat/completions"
    try:
        run_wrk(endpoint, args.connections, 2, core=1)  # warm-up
        print("| run | req/s | p50 ms | p90 ms | p99 ms | errors |")
        print("| --- | --- | --- | --- | --- | --- |")
        bodies: list[tuple[str, dict[str, object]]] = [("json", BODY)]
        if args.stream:
            bodies.append(("stream", {**BODY, "stream": True}))
        for kind, body in bodies:
            for run in range(1, args.runs + 1):
                result = run_wrk(endpoint, args.connections, args.duration, 1, body)
                print(result.row(f"{kind} {run}"), flush=True)
    finally:
        stop(server)
    print()
    print("server:", " ".join(mock_command(0)))
    script = Path("post.lua")
    print("load:  ", " ".join(wrk_command(endpoint, script, args.connections, args.duration, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
