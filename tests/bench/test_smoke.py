"""The benchmarks' smoke modes: each runs for a few seconds and checks that it works (not speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def smoke(script: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``bench/SCRIPT --smoke`` with this interpreter; its exit status and output."""
    return subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BENCH,
    )


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("tail.py", "| hedge_after auto |"),
        ("availability.py", "| correlated: failover |"),
        ("overhead.py", "| failover |"),
        ("http_client.py", "| wire |"),
    ],
)
def test_benchmark_smoke_mode_works(script: str, expected: str) -> None:
    """The benchmark's --smoke run exits 0 and prints its table."""
    done = smoke(script)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert expected in done.stdout
