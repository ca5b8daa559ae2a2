"""Start-up check, `failover check` and `failover status`, over real loopback HTTP.

Upstreams are `MockUpstream` servers (or tiny aiohttp fakes where a behaviour is needed that the
mock does not have: a provider echoing the key, a gateway serving /v1/status). The CLI runs in a
worker thread (`failover.cli.main` starts its own event loop) while the fakes serve in the test's.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from rich.console import Console

from failover import Gateway
from failover.check import (
    CheckRow,
    Reachability,
    check_deployments,
    check_lines,
    check_table,
    fetch_status,
    run_startup_check,
    status_table,
    status_url,
    unreachable_routes,
)
from failover.check.status import StatusUnavailable
from failover.cli import main
from failover.config import Config, config_from_dict
from failover.errors import ErrorClass
from failover.health import Admission, DeploymentState, MemoryHealth, Plan, Report
from failover.mock_upstream import MockUpstream

SECRET = "sk-test-check-0123456789abcdef"
GATEWAY_KEY = "client-key-9f8e7d6c5b4a"
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "LLM_PROVIDER",
)

Mocks = tuple[MockUpstream, MockUpstream, MockUpstream]


@pytest.fixture
async def mocks() -> AsyncIterator[Mocks]:
    """A healthy upstream, one that is down (503), and one that refuses the key (401)."""
    async with (
        MockUpstream("healthy", name="good") as good,
        MockUpstream("down", name="down") as down,
        MockUpstream("healthy", name="refused") as refused,
    ):
        refused.set_profile(error_rate=1.0, error_code="invalid_api_key", error_status="401")
        yield good, down, refused


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich wraps tables to 80 columns when stdout is not a terminal; assertions read whole cells.
    monkeypatch.setenv("COLUMNS", "200")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deployment(url: str) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o-mini", "api_base": url, "api_key": SECRET}


def _data(mocks: Mocks, *, closed_port: int | None = None) -> dict[str, Any]:
    good, down, refused = mocks
    nowhere = f"http://127.0.0.1:{closed_port or _closed_port()}/v1"
    return {
        "deployments": {
            "good": _deployment(good.url),
            "down": _deployment(down.url),
            "refused": _deployment(refused.url),
            "nokey": {**_deployment(nowhere), "api_key": "${CHECK_TEST_MISSING_KEY}"},
        },
        "routes": {
            "works": {"targets": ["down", "good"]},
            "broken": {"targets": ["refused", "nokey"]},
        },
    }


def _config(data: dict[str, Any]) -> Config:
    # No request log: these gateways only probe, and must leave no file behind.
    return config_from_dict({"store": {"url": "none"}, **data}, env={})


def _render(rows: list[CheckRow]) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(check_table(rows))
    return out.getvalue()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_rows_tell_reachable_down_refused_and_not_configured(mocks: Mocks) -> None:
    """Each deployment gets a row in config order with its outcome, class, status and latency."""
    port = _closed_port()
    async with Gateway(_config(_data(mocks, closed_port=port))) as gw:
        rows = await check_deployments(gw)
    by_name = {row.deployment: row for row in rows}
    assert [row.deployment for row in rows] == ["good", "down", "refused", "nokey"]
    assert by_name["good"].reachable is Reachability.YES
    assert by_name["good"].error_class is None
    assert by_name["down"].reachable is Reachability.NO
    assert (by_name["down"].error_class, by_name["down"].status) == (ErrorClass.SERVER_ERROR, 503)
    assert (by_name["refused"].error_class, by_name["refused"].status) == (ErrorClass.AUTH, 401)
    nokey = by_name["nokey"]
    # Its api_base is a closed port: any call would have been a connection error.
    assert nokey.reachable is Reachability.NOT_CONFIGURED
    assert (nokey.latency, nokey.error_class) == (None, None)
    assert nokey.message == "CHECK_TEST_MISSING_KEY not set"
    for name in ("good", "down", "refused"):
        latency = by_name[name].latency
        assert latency is not None
        assert 0 <= latency < 5
    assert all(row.provider == "openai" and row.model == "gpt-4o-mini" for row in rows)


async def test_not_configured_deployment_is_never_called(mocks: Mocks) -> None:
    """A deployment with a placeholder key is reported without any request reaching it."""
    good, _, _ = mocks
    data = {"deployments": {"placeholder": {**_deployment(good.url), "api_key": "your_key_here"}}}
    async with Gateway(_config(data)) as gw:
        rows = await check_deployments(gw)
    assert rows[0].reachable is Reachability.NOT_CONFIGURED
    assert rows[0].message == "api_key is a placeholder"
    assert good.stats.requests == 0


async def test_auth_failure_opens_circuit_before_first_request(mocks: Mocks) -> None:
    """A refused key at start opens that circuit, so the first request goes straight on."""
    good, _, refused = mocks
    data = {
        "deployments": {"refused": _deployment(refused.url), "good": _deployment(good.url)},
        "routes": {"chat": {"targets": ["refused", "good"]}},
    }
    async with Gateway(_config(data)) as gw:
        await check_deployments(gw)
        assert isinstance(gw.health, MemoryHealth)
        status = gw.health.snapshot()["refused"]
        assert status.state is DeploymentState.CIRCUIT_OPEN
        assert status.last_error is ErrorClass.AUTH
        assert refused.stats.requests == 1
        result = await gw.chat("chat", [{"role": "user", "content": "hi"}])
    assert result.deployment == "good"
    assert [a.deployment for a in result.attempts] == ["good"]
    assert refused.stats.requests == 1  # the probe only


async def test_health_seeded_from_each_outcome(mocks: Mocks) -> None:
    """A success is a sample, a 503 one failure, a missing key stays not configured."""
    async with Gateway(_config(_data(mocks))) as gw:
        await check_deployments(gw)
        assert isinstance(gw.health, MemoryHealth)
        snapshot = gw.health.snapshot()
    assert snapshot["good"].state is DeploymentState.AVAILABLE
    assert (snapshot["good"].samples, snapshot["good"].success_rate) == (1, 1.0)
    assert snapshot["down"].state is DeploymentState.AVAILABLE
    assert (snapshot["down"].failures, snapshot["down"].last_error) == (1, ErrorClass.SERVER_ERROR)
    assert snapshot["refused"].state is DeploymentState.CIRCUIT_OPEN
    assert snapshot["nokey"].state is DeploymentState.NOT_CONFIGURED


async def test_seed_health_off_leaves_health_untouched(mocks: Mocks) -> None:
    """With seed_health=False the rows are the same and health records nothing."""
    async with Gateway(_config(_data(mocks))) as gw:
        rows = await check_deployments(gw, seed_health=False)
        assert isinstance(gw.health, MemoryHealth)
        snapshot = gw.health.snapshot()
    assert [row.reachable.value for row in rows] == ["yes", "no", "no", "not configured"]
    assert snapshot["refused"].state is DeploymentState.AVAILABLE
    assert all(status.samples == 0 and status.failures == 0 for status in snapshot.values())


async def test_rate_limited_probe_starts_cooldown() -> None:
    """A 429 with Retry-After puts the deployment in its cooldown for that long."""
    async with MockUpstream("healthy", name="busy") as busy:
        busy.set_profile(error_rate=1.0, error_code="rate_limit_exceeded", retry_after=30)
        async with Gateway(_config({"deployments": {"busy": _deployment(busy.url)}})) as gw:
            rows = await check_deployments(gw)
            assert isinstance(gw.health, MemoryHealth)
            status = gw.health.snapshot()["busy"]
    assert (rows[0].error_class, rows[0].status) == (ErrorClass.RATE_LIMIT, 429)
    assert status.state is DeploymentState.RATE_LIMITED
    assert status.until is not None
    assert 25 < status.until <= 30


async def test_models_404_is_shown_but_not_fed_to_health() -> None:
    """A 404 on GET /models fails the row but does not open the circuit of a working chat API."""
    async with MockUpstream("healthy", name="nolist") as nolist:
        nolist.set_profile(error_rate=1.0, error_code="model_not_found")
        async with Gateway(_config({"deployments": {"nolist": _deployment(nolist.url)}})) as gw:
            rows = await check_deployments(gw)
            assert isinstance(gw.health, MemoryHealth)
            status = gw.health.snapshot()["nolist"]
    assert (rows[0].reachable, rows[0].error_class) == (Reachability.NO, ErrorClass.NOT_FOUND)
    assert status.state is DeploymentState.AVAILABLE
    assert (status.failures, status.last_error) == (0, None)


async def test_probe_bounded_by_check_timeout() -> None:
    """A hanging upstream costs at most probe_timeout, and shows as a timeout."""
    async with MockUpstream("hanging", name="hang") as hang:
        data = {"deployments": {"hang": {**_deployment(hang.url), "timeout": 30}}}
        async with Gateway(_config(data)) as gw:
            started = time.monotonic()
            rows = await check_deployments(gw, probe_timeout=0.3)
            elapsed = time.monotonic() - started
            assert isinstance(gw.health, MemoryHealth)
            status = gw.health.snapshot()["hang"]
    assert rows[0].error_class is ErrorClass.TIMEOUT
    assert "0.3s" in rows[0].message
    assert 0.25 < elapsed < 5
    assert (status.failures, status.last_error) == (1, ErrorClass.TIMEOUT)


async def test_probe_bounded_by_deployment_timeout() -> None:
    """A deployment's own timeout, when shorter than the cap, bounds its probe."""
    async with MockUpstream("hanging", name="hang") as hang:
        data = {"deployments": {"hang": {**_deployment(hang.url), "timeout": 0.2}}}
        async with Gateway(_config(data)) as gw:
            started = time.monotonic()
            rows = await check_deployments(gw, probe_timeout=30)
            elapsed = time.monotonic() - started
    assert rows[0].error_class is ErrorClass.TIMEOUT
    assert elapsed < 5


async def test_probes_run_concurrently() -> None:
    """Three hanging upstreams take about one probe's time, not three."""
    async with (
        MockUpstream("hanging", name="a") as a,
        MockUpstream("hanging", name="b") as b,
        MockUpstream("hanging", name="c") as c,
    ):
        deployments = {m.name: {**_deployment(m.url), "timeout": 1.0} for m in (a, b, c)}
        async with Gateway(_config({"deployments": deployments})) as gw:
            started = time.monotonic()
            rows = await check_deployments(gw)
            elapsed = time.monotonic() - started
    assert [row.error_class for row in rows] == [ErrorClass.TIMEOUT] * 3
    assert 0.9 < elapsed < 2.5  # one after the other would take 3


@pytest.fixture
async def echoing_upstream() -> AsyncIterator[str]:
    """A provider that echoes the Authorization header in its 401, as real ones do."""

    async def models(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')} ({auth})"
        return web.json_response(
            {"error": {"message": message, "type": "invalid_request_error", "code": "x"}},
            status=401,
        )

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner, base = await _serve(app)
    try:
        yield f"{base}/v1"
    finally:
        await runner.cleanup()


async def test_key_echoed_by_provider_never_shown(
    echoing_upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The key a provider echoes back is in no row, table, line or log record."""
    caplog.set_level(logging.DEBUG)
    # A key no pattern recognises: only the deployment's own key removes it.
    key = "plain-secret-value-42"
    data = {"deployments": {"echo": {**_deployment(echoing_upstream), "api_key": key}}}
    async with Gateway(_config(data)) as gw:
        rows = await run_startup_check(gw, logging.getLogger("test.check"))
    assert rows[0].error_class is ErrorClass.AUTH
    assert "Incorrect API key provided" in rows[0].message
    shown = [repr(rows), _render(rows), *check_lines(rows), caplog.text]
    assert all(key not in text for text in shown)


async def test_startup_check_logs_one_line_per_deployment(
    mocks: Mocks, caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up check logs every deployment (WARNING when not reachable) and the bad routes."""
    caplog.set_level(logging.INFO, logger="test.check")
    async with Gateway(_config(_data(mocks))) as gw:
        rows = await run_startup_check(gw, logging.getLogger("test.check"))
    assert len(rows) == 4
    records = [r for r in caplog.records if r.name == "test.check"]
    lines = {r.getMessage(): r.levelno for r in records}
    assert lines["start-up check: 1 of 4 deployments reachable"] == logging.INFO
    good = next(line for line in lines if line.startswith("deployment 'good'"))
    assert "reachable in" in good
    assert lines[good] == logging.INFO
    refused = next(line for line in lines if line.startswith("deployment 'refused'"))
    assert "unreachable, auth (401)" in refused
    assert lines[refused] == logging.WARNING
    nokey = next(line for line in lines if line.startswith("deployment 'nokey'"))
    assert "not configured (CHECK_TEST_MISSING_KEY not set)" in nokey
    route = next(line for line in lines if line.startswith("route"))
    assert route.startswith("route 'broken': no reachable deployment")
    assert lines[route] == logging.WARNING
    assert all(SECRET not in line for line in lines)


class _BrokenHealth:
    """A health backend whose every call fails (a Redis that went away)."""

    async def plan(self, targets: Any, *, early_probe: bool = True) -> Plan:
        raise ConnectionError("state backend down")

    async def admit(self, deployment: str, *, probe: bool = False) -> Admission | None:
        raise ConnectionError("state backend down")

    async def report(self, admission: Admission, report: Report) -> None:
        raise ConnectionError("state backend down")


async def test_startup_check_survives_broken_health(
    mocks: Mocks, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing health backend is logged; the rows still come back."""
    async with Gateway(_config(_data(mocks)), health=_BrokenHealth()) as gw:
        rows = await run_startup_check(gw, logging.getLogger("test.check"))
    assert [row.reachable.value for row in rows] == ["yes", "no", "no", "not configured"]
    assert "health admit for deployment 'good' failed" in caplog.text


async def test_startup_check_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A check that cannot run at all is logged and returns no rows instead of raising."""
    data = {"deployments": {"a": _deployment(f"http://127.0.0.1:{_closed_port()}/v1")}}
    async with Gateway(_config(data)) as gw:
        rows = await run_startup_check(gw, logging.getLogger("test.check"), probe_timeout=0)
    assert rows == []
    assert "start-up check failed; the gateway starts without it" in caplog.text


async def test_closed_gateway_gives_rows_not_errors(caplog: pytest.LogCaptureFixture) -> None:
    """A probe that fails for a reason of ours (a closed client) is a 'no' row, logged."""
    data = {"deployments": {"a": _deployment(f"http://127.0.0.1:{_closed_port()}/v1")}}
    gw = Gateway(_config(data))
    await gw.aclose()
    rows = await run_startup_check(gw, logging.getLogger("test.check"))
    assert rows[0].reachable is Reachability.NO
    assert rows[0].message == "probe failed: RuntimeError"
    assert "probe of deployment 'a' failed unexpectedly" in caplog.text


def _row(name: str, reachable: Reachability) -> CheckRow:
    return CheckRow(name, "openai", "m", reachable)


def test_unreachable_routes_need_one_reachable_target() -> None:
    """A route is unreachable only when none of its targets is reachable."""
    deployment = {"provider": "openai", "model": "m", "api_key": SECRET}
    config = _config(
        {
            "deployments": {"a": deployment, "b": deployment, "c": deployment},
            "routes": {"ab": {"targets": ["a", "b"]}, "c": {"targets": ["c"]}},
        }
    )
    rows = [
        _row("a", Reachability.NO),
        _row("b", Reachability.YES),
        _row("c", Reachability.NOT_CONFIGURED),
    ]
    assert {k: [r.deployment for r in v] for k, v in unreachable_routes(config, rows).items()} == {
        "c": ["c"]
    }


def test_without_routes_each_deployment_is_its_own_route() -> None:
    """A config without routes: every deployment that is not reachable is an unreachable route."""
    deployment = {"provider": "openai", "model": "m", "api_key": SECRET}
    config = _config({"deployments": {"a": deployment, "b": deployment}})
    rows = [_row("a", Reachability.YES), _row("b", Reachability.NO)]
    assert list(unreachable_routes(config, rows)) == ["b"]


def test_table_keeps_bracketed_text() -> None:
    """Messages with brackets ([REDACTED]) are shown as written, not read as rich markup."""
    row = CheckRow(
        "a", "openai", "m", Reachability.NO, 0.0123, ErrorClass.AUTH, 401, "bad key [REDACTED]"
    )
    text = _render([row])
    assert "bad key [REDACTED]" in text
    assert "auth (401)" in text
    assert "12 ms" in text


# -- failover check ---------------------------------------------------------------------------


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def test_cli_check_all_routes_reachable(
    mocks: Mocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 when every route has a reachable deployment; the table lists every deployment."""
    data = _data(mocks)
    del data["routes"]["broken"]
    config = _write(tmp_path / "gw.yaml", data)
    assert await _cli("check", "--config", str(config)) == 0
    out = capsys.readouterr().out
    for cell in ("good", "down", "refused", "nokey", "server_error (503)", "auth (401)"):
        assert cell in out
    assert "not configured" in out
    assert "CHECK_TEST_MISSING_KEY not set" in out
    assert "every route (1) has a reachable deployment" in out
    assert SECRET not in out


async def test_cli_check_names_unreachable_routes(
    mocks: Mocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 and the route named, with why each of its targets failed."""
    config = _write(tmp_path / "gw.yaml", _data(mocks))
    assert await _cli("check", "--config", str(config)) == 1
    captured = capsys.readouterr()
    assert (
        "route 'broken': no reachable deployment (refused: auth (401), nokey: not configured)"
        in captured.out
    )
    assert "route 'works'" not in captured.out
    assert SECRET not in captured.out + captured.err


async def test_cli_check_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 and the problem with its key path on stderr; nothing is probed."""
    data = {
        "deployments": {"a": {"provider": "openai", "model": "m", "api_key": SECRET}},
        "routes": {"r": {"targets": ["a", "gpt5"]}},
    }
    config = _write(tmp_path / "gw.yaml", data)
    assert await _cli("check", "--config", str(config)) == 2
    captured = capsys.readouterr()
    assert "routes.r.targets[1]: unknown deployment 'gpt5'" in captured.err
    assert captured.out == ""
    assert SECRET not in captured.err


async def test_cli_check_reads_failover_yaml_in_cwd(
    mocks: Mocks,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --config, ./failover.yaml is the config."""
    good, _, _ = mocks
    _write(tmp_path / "failover.yaml", {"deployments": {"here": _deployment(good.url)}})
    monkeypatch.chdir(tmp_path)
    assert await _cli("check") == 0
    assert "here" in capsys.readouterr().out
    assert good.stats.requests == 1


async def test_cli_check_zero_config_from_dotenv(
    mocks: Mocks,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without a config file, the environment and ./.env make the zero-config route."""
    good, _, _ = mocks
    for variable in PROVIDER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / ".env").write_text(f"OLLAMA_BASE_URL={good.base_url}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert await _cli("check") == 0
    out = capsys.readouterr().out
    assert "ollama" in out
    assert "yes" in out
    assert good.stats.requests == 1


async def test_cli_check_zero_config_without_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No config and no key anywhere: exit 2 saying which variables to set."""
    for variable in PROVIDER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    assert await _cli("check") == 2
    assert "no provider key found" in capsys.readouterr().err


async def test_cli_check_never_touches_shared_state(
    mocks: Mocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config on Redis state is checked without connecting to Redis (nothing listens there)."""
    good, _, _ = mocks
    data = {
        "state": {"backend": "redis", "url": f"redis://127.0.0.1:{_closed_port()}/0"},
        "deployments": {"good": _deployment(good.url)},
    }
    assert await _cli("check", "--config", str(_write(tmp_path / "gw.yaml", data))) == 0
    assert "good" in capsys.readouterr().out


# -- failover status --------------------------------------------------------------------------

STATUS_ROWS = [
    {
        "deployment": "groq-llama",
        "state": "circuit_open",
        "consecutive_failures": 5,
        "cooldown_ends_in": 12.5,
        "last_error": "server_error",
        "probe_in_flight": False,
        "success_rate": 0.25,
        "latency": {"p50": 0.12, "p95": 0.8, "p99": 1.5},
        "samples": 40,
    },
    {
        "deployment": "openai-mini",
        "state": "available",
        "consecutive_failures": 0,
        "cooldown_ends_in": None,
        "last_error": None,
        "probe_in_flight": False,
        "success_rate": None,
        "latency": {"p50": None, "p95": None, "p99": None},
        "samples": 0,
    },
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def status_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Starts a fake gateway whose GET /v1/status runs the given handler; yields its URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/v1/status", handler)
        runner, base = await _serve(app)
        runners.append(runner)
        return base

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


async def _status_ok(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {GATEWAY_KEY}":
        return web.json_response(
            {"error": {"message": "missing or wrong key", "type": "auth", "code": "401"}},
            status=401,
        )
    return web.json_response({"object": "list", "data": STATUS_ROWS})


async def test_cli_status_prints_table(
    status_server: Callable[[Handler], Awaitable[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The status rows come out as a table; the key is sent but never printed."""
    url = await status_server(_status_ok)
    assert await _cli("status", "--url", url, "--key", GATEWAY_KEY) == 0
    captured = capsys.readouterr()
    out = captured.out
    for cell in ("groq-llama", "circuit_open", "12.5 s", "server_error", "25.0%", "120 ms"):
        assert cell in out
    assert "800 ms" in out
    assert "1500 ms" in out
    assert "openai-mini" in out
    assert "available" in out
    assert GATEWAY_KEY not in out + captured.err


async def test_cli_status_without_key_says_to_give_one(
    status_server: Callable[[Handler], Awaitable[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 401 from the gateway exits 1 and points at --key."""
    url = await status_server(_status_ok)
    assert await _cli("status", "--url", url) == 1
    assert "answered 401: give its key with --key" in capsys.readouterr().err


async def test_cli_status_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    """No gateway at the URL: exit 1 with a message saying so, not a traceback."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert await _cli("status", "--url", url, "--key", GATEWAY_KEY) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"failover status: cannot reach the gateway at {url}")
    assert "Traceback" not in err
    assert GATEWAY_KEY not in err


async def test_status_rejects_unexpected_shape(
    status_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """An answer that is not {"data": [rows]} is a clear error."""

    async def wrong(request: web.Request) -> web.Response:
        return web.json_response({"deployments": STATUS_ROWS})

    url = await status_server(wrong)
    with pytest.raises(StatusUnavailable, match="unexpected shape"):
        await fetch_status(url)


async def test_status_reports_gateway_error_message(
    status_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """A non-200 answer names the status and the gateway's own message, without the key."""

    async def failing(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        return web.json_response(
            {"error": {"message": f"boom for {auth}", "type": "server", "code": "x"}}, status=500
        )

    url = await status_server(failing)
    with pytest.raises(StatusUnavailable, match="answered 500") as caught:
        await fetch_status(url, key=GATEWAY_KEY)
    assert "boom for" in str(caught.value)
    assert GATEWAY_KEY not in str(caught.value)


def test_status_url_forms() -> None:
    """--url may omit the scheme, end in a slash or in /v1; user info is not kept."""
    assert str(status_url("127.0.0.1:4000")) == "http://127.0.0.1:4000/v1/status"
    assert str(status_url("http://gw:4000/v1/")) == "http://gw:4000/v1/status"
    assert str(status_url("https://gw/prefix")) == "https://gw/prefix/v1/status"
    with pytest.raises(StatusUnavailable, match="not an http"):
        status_url("ftp://gw")


def test_status_table_tolerates_missing_fields() -> None:
    """Rows from an older or newer gateway show '-' where a field is missing."""
    out = io.StringIO()
    Console(file=out, width=200).print(status_table([{"deployment": "x", "state": "half_open"}]))
    text = out.getvalue()
    assert "x" in text
    assert "half_open" in text
    assert text.count(" - ") >= 5
