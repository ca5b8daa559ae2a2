"""The chaos soak (`bench/soak.py`): its fault schedule, the short run, and the --serve mode."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest

from failover.mock_upstream import MockUpstream

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_soak() -> ModuleType:
    """``bench/soak.py`` as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("soak_under_test", BENCH / "soak.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve their string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_schedule_walks_every_fault_phase() -> None:
    """Provider a goes healthy, errors, hanging, 429 storm, healthy within one cycle."""
    soak = load_soak()
    cycle = 48.0
    seen: list[str] = []
    for tenth in range(480):
        label = soak.phase("a", tenth / 10, cycle)[0]
        if not seen or seen[-1] != label:
            seen.append(label)
    assert seen == ["healthy", "errors", "hanging", "429 storm", "healthy"]


def test_success_is_required_only_after_a_provider_recovered() -> None:
    """No success is required while nobody is healthy, and it is again GRACE after recovery."""
    soak = load_soak()
    cycle = 48.0
    assert soak.must_succeed(1.0, cycle)  # both healthy from the start
    assert not soak.must_succeed(20.0, cycle)  # a and b both hang
    b_back = 0.5 * cycle
    assert not soak.must_succeed(b_back + soak.GRACE - 0.5, cycle)
    assert soak.must_succeed(b_back + soak.GRACE + 0.1, cycle)


def test_deployment_timeout_fits_the_deadline() -> None:
    """A sequential request's three attempts (a, a again, b) fit inside its deadline."""
    soak = load_soak()
    config = soak.config({})
    assert config["routes"]["sequential"]["deadline"] > 3 * soak.TIMEOUT
    assert "default_response" not in config["routes"]["sequential"]
    assert config["routes"]["hedged"]["default_response"]


@pytest.mark.slow
def test_short_soak_passes_every_check() -> None:
    """The ~50 s soak answers on time, never 500s, recovers, and drains tasks and descriptors."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=BENCH,
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    assert "soak: passed" in done.stdout
    assert "FAIL:" not in done.stdout
    recovered = re.search(r"after recovery: (\d+)/(\d+) succeeded", done.stdout)
    assert recovered is not None, output
    assert int(recovered.group(2)) > 500  # the check covered most of the run


async def test_served_gateway_is_sampled_in_its_own_process() -> None:
    """--serve: `failover serve` answers, is sampled by its pid, and exits 0 on SIGTERM."""
    soak = load_soak()
    async with MockUpstream(name="a", seed=1) as a, MockUpstream(name="b", seed=2) as b:
        config = soak.config({"a": a.url, "b": b.url})
        async with soak.served(config) as target:
            assert target.pid not in (None, os.getpid())
            run = soak.Run(1.0, 60.0, pid=target.pid)
            before = soak.sample(run, 0.0)
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{target.url}/chat/completions",
                    json={"model": "hedged", "messages": soak.MESSAGES},
                ) as response,
            ):
                assert response.status == 200
            after = soak.sample(run, 0.0)
    status = soak.proc_status(None)
    assert before.tasks is None  # not visible from outside the gateway
    assert before.net_mb == before.rss_mb > 20
    assert after.threads >= 1
    assert before.rss_mb != int(status["VmRSS"].split()[0]) / 1024  # not this process
    assert a.stats.requests + b.stats.requests >= 1
    assert any("listening on" in line for line in target.log)
    assert target.exit_code == 0
    assert target.stop_seconds < soak.SHUTDOWN_BOUND


def test_drain_fails_a_gateway_that_does_not_exit_cleanly() -> None:
    """A served gateway that exits non-zero (or late) fails the run; tasks are not checked."""
    soak = load_soak()
    base = soak.Sample(0.0, 60.0, 10, None, 60.0, 1)
    run = soak.Run(1.0, 60.0, pid=1234)
    for code, seconds, failed in ((0, 1.0, False), (1, 1.0, True), (0, 99.0, True)):
        target = soak.Target("http://x/v1", 1234, exit_code=code, stop_seconds=seconds)
        extra = {"baseline": base, "drained": base, "pool": 0, "fds_per_pooled": 1}
        assert bool(soak.drain(run, {**extra, "target": target})) is failed


def test_slopes_leave_out_tasks_they_cannot_see() -> None:
    """--serve samples carry no task count: the slope table skips it and checks the rest."""
    soak = load_soak()
    run = soak.Run(240.0, 60.0, pid=1234)
    for t in range(240):
        rss = 60.0 + t / 60  # +1 MB a minute: above the 0.5 bound
        run.samples.append(soak.Sample(float(t), rss, 10, None, rss, 2))
    failures = soak.slopes(run)
    assert [f.split()[0] for f in failures] == ["net_mb"]
