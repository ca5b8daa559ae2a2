"""The chaos soak (`bench/soak.py`): its fault schedule, the short run, and the --serve mode."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import math
import os
import re
import signal
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


# -- --hostile ---------------------------------------------------------------------------------


def test_hostile_mix_leaves_a_healthy_way_out() -> None:
    """Every hostile provider fronts a route; a route that must succeed has c behind it; each
    deployment and the client have their own key, and the request log and alerts are on."""
    soak = load_soak()
    names = ["a", "b", "c", *soak.HOSTILE]
    keys = {name: soak.secret_key(name) for name in (*names, "client")}
    config = soak.hostile_config({n: f"http://127.0.0.1:1/{n}/v1" for n in names}, keys, Path("x"))
    assert set(config["deployments"]) == set(names)
    assert len({d["api_key"] for d in config["deployments"].values()}) == len(names)
    assert config["server"]["api_keys"] == [keys["client"]]
    assert config["store"]["url"] == "sqlite:///x"
    assert config["alerts"] == [{"kind": "log"}]
    fronted = {config["routes"][route]["targets"][0] for route in soak.HOSTILE_ROUTES}
    assert set(soak.HOSTILE) <= fronted
    for route, (targets, hedged, expect) in soak.HOSTILE_ROUTES.items():
        assert config["routes"][route]["targets"] == list(targets)
        assert ("hedge_after" in config["routes"][route]) is hedged
        if expect == "success":
            assert targets[-1] == "c"
        assert "default_response" not in config["routes"][route]
    assert {"hedged", "sequential"} <= set(config["routes"])


def test_a_5xx_is_honest_only_as_an_upstream_failure_answer() -> None:
    """502/503/504 with x-should-retry: false and a failure class are honest; any other 5xx,
    or one of those without the header or with another code, was made by the gateway."""
    soak = load_soak()

    def made(status: int, code: str | None, retry: str | None = "false") -> bool:
        result = soak.Result(0.0, "r", False, status=status, code=code, should_retry=retry)
        return bool(soak.made_by_gateway(result))

    assert not made(502, "malformed")
    assert not made(503, "circuit_open")
    assert not made(504, "deadline_exceeded")
    assert not made(400, "bad_request", None)
    assert not made(200, None, None)
    assert made(500, "internal_error")
    assert made(501, "timeout")
    assert made(502, "malformed", None)
    assert made(503, "internal_error")
    assert made(504, None)


def test_secrets_are_found_whole_encoded_or_in_pieces() -> None:
    """A key is found whole, in base64, as Bearer, or as 12 of its characters left by a cut;
    redacted text, ids and other words are not keys."""
    soak = load_soak()
    key = soak.secret_key("echo400")
    secrets = soak.Secrets({"echo400": key, "client": soak.secret_key("client")})
    assert key.startswith("echo400-")
    assert soak.secret_key("echo400") == key  # the same in every run
    assert secrets.find(f"type: invalid_request_error:{key}") == {"echo400"}
    assert secrets.find(base64.b64encode(f"Bearer {key}".encode()).decode()) == {"echo400"}
    assert secrets.find("....Request made with " + key[:14]) == {"echo400"}
    assert secrets.find(key[-12:] + " trailing") == {"echo400"}
    assert secrets.find(key[:11]) == set()
    assert (
        secrets.find("invalid_request_error:[REDACTED] req_01a23777ad23c4bc14e45a81e486") == set()
    )


def test_record_check_names_missing_doubled_and_unknown_rows() -> None:
    """Each request sent must have one row (by its x-request-id) and each answered id a row."""
    soak = load_soak()
    results = [
        soak.Result(0.0, "r", False, ident="soak-0", request_id="req_0"),
        soak.Result(0.0, "r", False, ident="soak-1", request_id="req_1"),
        soak.Result(0.0, "r", False, left=True, ident="soak-2"),
    ]
    rows = [("req_0", "soak-0"), ("req_1", "soak-1"), ("req_2", "soak-2")]
    figure, failures = soak.record_check(results, rows)
    assert failures == []
    assert "3 rows for 3 requests sent; missing 0" in figure
    figure, failures = soak.record_check(
        results, [("req_0", "soak-0"), ("req_x", "soak-0"), ("req_9", "soak-9")]
    )
    assert "missing 2 (1 of clients that left)" in figure
    assert [f.split(" ", 2)[1] for f in failures] == ["requests", "requests", "rows", "answered"]


def test_rss_slope_is_least_squares_per_minute() -> None:
    """The slope is fitted over every sample (per minute); gone samples (NaN) are left out."""
    soak = load_soak()
    points = [(float(t), 100.0 + t / 60 + (5.0 if t == 120 else 0.0)) for t in range(60, 600)]
    assert abs(soak.slope_per_minute(points) - 1.0) < 0.05
    assert soak.slope_per_minute([(0.0, 1.0), (60.0, math.nan), (120.0, 3.0)]) == 1.0
    assert math.isnan(soak.slope_per_minute([(0.0, 1.0)]))


async def test_gateway_log_lines_are_kept_however_long() -> None:
    """A 1 MB log line is kept cut with its length, and the lines after it still arrive."""
    soak = load_soak()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('x' * 1_000_000 + '\\n' + 'INFO after\\n' + 'tail')",
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    await soak.read_lines(process, log)
    await process.wait()
    assert len(log) == 3
    assert log[0].startswith("x" * 1000)
    assert len(log[0]) < 70_000
    assert log[0].endswith("[... a line of 1000001 bytes]\n")
    assert log[1:] == ["INFO after\n", "tail"]


async def test_rss_guard_kills_a_process_past_its_bound() -> None:
    """The guard kills the sampled process once its RSS passes the bound, and says so."""
    soak = load_soak()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        run = soak.Run(60.0, 60.0, pid=process.pid)
        async with asyncio.timeout(30):
            await soak.guard(run, 1.0, 0.0)
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == -signal.SIGKILL
    assert run.killed is not None
    assert "above the guard's 1 MB" in run.killed
    assert run.peak_mb > 1.0
    assert math.isnan(soak.rss_of(process.pid))


@pytest.mark.slow
async def test_short_hostile_soak_passes_every_check() -> None:
    """12 s of --serve --hostile: no 5xx made by the gateway, every request recorded, no key
    in any output, no forged log line, RSS bounded; and every hostile provider was met."""
    soak = load_soak()
    run, extra = await soak.soak(
        12.0, 20.0, 48.0, 1, serve=True, hostile=True, huge_mb=50.0, guard_mb=1500.0
    )
    failures = soak.check(run, extra, long=False)
    assert failures == []
    assert len(extra["hostile"]["rows"]) == len(run.results) > 200
    for name in soak.HOSTILE:
        assert extra["upstream"][name]["requests"] >= 1, name
    assert [r for r in run.results if r.route == "via-echo400" and r.status == 400]
    assert len(extra["target"].log) > 3
