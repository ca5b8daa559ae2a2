"""Observability end to end: a real Gateway over `MockUpstream` servers, real loopback HTTP.

Here the tests run the gateway's engine and call `request_finished` with the attempt list they
gave the engine, as the gateway's front door does. Real time, wide margins, ordering assertions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from failover import AllTargetsFailed, Gateway
from failover.clock import LoopClock
from failover.config import Config, config_from_dict
from failover.errors import ErrorClass, UpstreamStatusError
from failover.health.memory import MemoryHealth
from failover.mock_upstream import MockUpstream
from failover.observe import Observability, open_store
from failover.types import AttemptRecord, ChatRequest, ChatResult

from .conftest import closed_port, gateway_config, poll_until

MESSAGES = [{"role": "user", "content": "hello there"}]
# Through the engine, then reported by hand: the way the HTTP server reports a request.
REQUEST = ChatRequest(messages=MESSAGES)

Mocks = tuple[MockUpstream, MockUpstream]


async def _ask(
    obs: Observability, gw: Gateway, request_id: str, **kwargs: Any
) -> tuple[ChatResult | None, BaseException | None, float]:
    """One request through the gateway, reported to `obs` as the server will report it."""
    wall, started = time.time(), time.perf_counter()
    result: ChatResult | None = None
    error: BaseException | None = None
    attempts: list[AttemptRecord] = []
    try:
        result = await gw.engine.chat(
            gw.route("intent"), REQUEST, request_id=request_id, attempts=attempts
        )
    except Exception as exc:
        error = exc
    latency = time.perf_counter() - started
    obs.request_finished(
        request_id=request_id,
        route="intent",
        started_at_wall=wall,
        latency=latency,
        result=result,
        error=error,
        client_key_id="key_client",
        client_request_id=kwargs.get("client_request_id"),
        stream=False,
        records=attempts,
    )
    return result, error, latency


async def _ask_each(
    obs: Observability, gw: Gateway, count: int, *, pause: float = 0.0
) -> tuple[list[ChatResult], list[float]]:
    """``req_0`` … one after another (``pause`` s apart); each answered: results, latencies."""
    results: list[ChatResult] = []
    latencies: list[float] = []
    for n in range(count):
        result, _, latency = await _ask(obs, gw, f"req_{n}")
        assert result is not None
        results.append(result)
        latencies.append(latency)
        if pause:
            await asyncio.sleep(pause)
    return results, latencies


def _outcomes(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["deployment"], a["outcome"]) for a in record["attempts"]]


async def test_hedged_request_records_its_background_loser(store_url: str, mocks: Mocks) -> None:
    """Both attempts of a hedged request are recorded, the loser once it finished for real."""
    main, fallback = mocks
    main.set_profile(latency="1.0")
    config = config_from_dict(
        gateway_config(
            main, fallback, store=store_url, hedge_after=0.2, deadline=5, finish_losers=4
        )
    )
    obs = Observability.from_config(config)
    await obs.start()
    try:
        async with Gateway(config, observability=obs) as gw:
            result, _, _ = await _ask(obs, gw, "req_hedged", client_request_id="client-1")
            assert result is not None
            assert result.deployment == "fallback"
            early = await obs.get_record("req_hedged")  # at once: from the buffer
            assert early is not None
            assert _outcomes(early) == [("main", "running"), ("fallback", "success")]
            await poll_until(lambda: result.attempts[0].outcome != "running", tries=100, every=0.05)
            late = await obs.get_record("req_hedged")
    finally:
        await obs.aclose()
    assert late is not None
    assert _outcomes(late) == [("main", "lost_completed"), ("fallback", "success")]
    store = open_store(store_url)
    assert store is not None
    try:
        stored = await store.get("req_hedged")
    finally:
        await store.aclose()
    assert stored is not None
    assert stored.as_dict() == late
    main_attempt, fallback_attempt = late["attempts"]
    assert main_attempt["start_ms"] < 50
    assert 150 <= fallback_attempt["start_ms"] < 800
    assert fallback_attempt["hedge"]
    assert fallback_attempt["end_ms"] < main_attempt["end_ms"]
    assert 900 <= main_attempt["end_ms"] < 3000
    assert late["outcome"] == "success"
    assert late["fallback"]
    assert late["deployment"] == "fallback"
    assert late["client_request_id"] == "client-1"
    assert late["client_key_id"] == "key_client"
    usage = result.usage
    assert late["prompt_tokens"] == usage.prompt_tokens > 0
    expected = (usage.prompt_tokens * 10 + usage.completion_tokens * 20) / 1e6
    assert late["cost_usd"] == pytest.approx(expected)


async def test_failed_request_is_recorded_with_its_code(sqlite_url: str, mocks: Mocks) -> None:
    """A request every target failed is recorded with the code the client got, attempts too."""
    main, fallback = mocks
    main.set_profile("down")
    fallback.set_profile("down")
    config = config_from_dict(gateway_config(main, fallback, store=sqlite_url))
    obs = Observability.from_config(config)
    await obs.start()
    try:
        async with Gateway(config, observability=obs) as gw:
            _, error, _ = await _ask(obs, gw, "req_failed")
        assert isinstance(error, AllTargetsFailed)
        assert [a.outcome for a in error.attempts] == ["server_error", "server_error"]
        record = await obs.get_record("req_failed")
    finally:
        await obs.aclose()
    assert record is not None
    assert record["outcome"] == "server_error"
    assert record["deployment"] is None
    assert _outcomes(record) == [("main", "server_error"), ("fallback", "server_error")]
    assert [a["status"] for a in record["attempts"]] == [503, 503]
    metrics = obs.metrics_text().decode()
    assert 'failover_requests_total{outcome="server_error",route="intent"} 1.0' in metrics


async def test_dead_postgres_leaves_requests_alone(
    mocks: Mocks, caplog: pytest.LogCaptureFixture
) -> None:
    """With the store's PostgreSQL down, requests answer as fast as ever; one log line says so."""
    main, fallback = mocks
    url = f"postgresql://127.0.0.1:{closed_port()}/test"
    config = config_from_dict(gateway_config(main, fallback, store=url))
    obs = Observability.from_config(config, flush_interval=0.02)
    await obs.start()
    with caplog.at_level(logging.WARNING, logger="failover.observe"):
        try:
            async with Gateway(config, observability=obs) as gw:
                results, latencies = await _ask_each(obs, gw, 20, pause=0.02)
                assert all(result.deployment == "main" for result in results)
            record = await obs.get_record("req_19")  # still readable from the buffer
        finally:
            await obs.aclose(grace=0.3)
    assert record is not None
    assert record["outcome"] == "success"
    assert max(latencies) < 1.0  # a healthy mock answers in milliseconds; wide margin
    outage_lines = [
        r for r in caplog.records if "request log" in r.message and "failed" in r.message
    ]
    assert len(outage_lines) == 1
    text = obs.metrics_text().decode()
    failures = _sample(text, "failover_store_failures_total")
    assert failures >= 1
    assert _sample(text, "failover_store_dropped_records_total") == 20


async def test_dead_webhook_leaves_requests_alone(
    mocks: Mocks, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook on a closed port never slows requests; its failure is logged once, counted."""
    main, fallback = mocks
    main.set_profile("down")
    fallback.set_profile("down")
    hook = {
        "kind": "webhook",
        "url": f"http://127.0.0.1:{closed_port()}/hook/secret-token",
        "min_level": "INFO",
        "dedup_seconds": 0,
    }
    config = config_from_dict(
        gateway_config(main, fallback, alerts=[hook], default_response="FALLBACK_TEXT")
    )
    obs = Observability.from_config(config)
    await obs.start()
    with caplog.at_level(logging.WARNING, logger="failover.observe.sinks"):
        try:
            async with Gateway(config, observability=obs) as gw:
                results, latencies = await _ask_each(obs, gw, 10)
                assert all(result.degraded for result in results)
                await poll_until(
                    lambda: (
                        _sample(obs.metrics_text().decode(), "failover_alert_failures_total") >= 10
                    ),
                    tries=100,
                    every=0.02,
                )
        finally:
            await obs.aclose(grace=0.5)
    assert max(latencies) < 1.0
    webhook_lines = [r for r in caplog.records if "alert webhook" in r.message]
    assert len(webhook_lines) == 1
    assert "secret-token" not in caplog.text
    text = obs.metrics_text().decode()
    assert _sample(text, "failover_alert_failures_total") >= 10
    assert 'failover_alerts_total{level="CRITICAL",type="all_failed"} 10.0' in text


async def test_health_transitions_alert_and_set_the_circuit_gauge(
    mocks: Mocks, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused key opens main's circuit: an auth_failed alert and the gauge say so."""
    main, fallback = mocks
    main.set_profile(error_rate=1.0, error_code="invalid_api_key")
    config: Config = config_from_dict(gateway_config(main, fallback))
    obs = Observability.from_config(config)
    health = MemoryHealth(
        config.health, config.deployments, LoopClock(), on_transition=obs.on_transition
    )
    await obs.start()
    with caplog.at_level(logging.INFO, logger="failover.alerts"):
        try:
            async with Gateway(config, health=health, observability=obs) as gw:
                result, _, _ = await _ask(obs, gw, "req_auth")
        finally:
            await obs.aclose()
    assert result is not None
    assert result.deployment == "fallback"
    alerts = [r for r in caplog.records if r.name == "failover.alerts"]
    assert [r.levelname for r in alerts] == ["CRITICAL"]
    assert "auth_failed route=intent deployment=main request=req_auth" in alerts[0].message
    text = obs.metrics_text().decode()
    assert 'failover_circuit_state{deployment="main",state="circuit_open"} 1.0' in text
    assert 'failover_circuit_state{deployment="main",state="available"} 0.0' in text
    assert 'failover_fallbacks_total{deployment="fallback",route="intent"} 1.0' in text


def _sample(text: str, name: str) -> float:
    """The summed value of a metric's samples in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_lost_span_batches_are_counted_in_metrics() -> None:
    """Each span batch a dead OTLP endpoint did not take counts in trace_export_failures."""
    config = config_from_dict(
        {
            "store": {"url": "none"},
            "alerts": [],
            "telemetry": {"otlp_endpoint": f"http://127.0.0.1:{closed_port()}"},
            "deployments": {"main": {"provider": "openai", "model": "m", "api_key": "sk-x"}},
            "routes": {"intent": {"targets": ["main"]}},
        }
    )
    obs = Observability.from_config(config)
    assert obs.tracing is not None
    for n in range(600):  # past a batch (512 spans): exported at once, and lost
        obs.request_finished(
            request_id=f"req_{n}",
            route="intent",
            started_at_wall=time.time(),
            latency=0.01,
            result=None,
            error=None,
            records=(),
        )
    deadline = time.monotonic() + 15
    while obs.tracing.export_failures < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await obs.aclose(grace=2.0)
    lost = obs.tracing.export_failures
    assert f"failover_trace_export_failures_total {float(lost)}" in obs.metrics_text().decode()


async def test_a_providers_own_400_code_is_not_a_metric_label() -> None:
    """A provider's 400 is counted as bad_request, whatever code it chose (bounded labels)."""
    config = config_from_dict(
        {
            "store": {"url": "none"},
            "alerts": [],
            "deployments": {"main": {"provider": "openai", "model": "m", "api_key": "sk-x"}},
            "routes": {"intent": {"targets": ["main"]}},
        }
    )
    obs = Observability.from_config(config)
    for n in range(3):
        error = UpstreamStatusError(
            "bad", status=400, error_class=ErrorClass.BAD_REQUEST, code=f"vendor_code_{n}"
        )
        obs.request_finished(
            request_id=f"req_{n}",
            route="intent",
            started_at_wall=time.time(),
            latency=0.01,
            result=None,
            error=error,
            records=(),
        )
    text = obs.metrics_text().decode()
    await obs.aclose(grace=1.0)
    assert "vendor_code" not in text
    assert 'failover_requests_total{outcome="bad_request",route="intent"} 3.0' in text
