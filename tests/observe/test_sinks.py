"""Alert sinks: min_level, dedup per sink, log levels, the webhook and a dead one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from failover.clock import ManualClock
from failover.config import AlertConfig, AlertLevel
from failover.observe.alerts import Alert, AlertType
from failover.observe.sinks import Alerter, Gate, LogSink, WebhookSink

from .conftest import WebhookReceiver, closed_port, poll_until


def _alert(
    kind: AlertType = AlertType.CIRCUIT_OPEN,
    level: AlertLevel = AlertLevel.CRITICAL,
    deployment: str = "main",
) -> Alert:
    return Alert(level, kind, "intent", deployment, "req_1", "circuit opened", 0.0)


def test_gate_min_level() -> None:
    """Alerts below a sink's min_level do not pass."""
    gate = Gate(AlertLevel.HIGH, 0, ManualClock())
    assert gate.admit(_alert(AlertType.MALFORMED_RESPONSE, AlertLevel.MEDIUM)) is None
    assert gate.admit(_alert(AlertType.RATE_LIMITED, AlertLevel.HIGH)) == 0
    assert gate.admit(_alert(AlertType.ALL_FAILED, AlertLevel.CRITICAL)) == 0


def test_gate_dedup_by_type_route_deployment() -> None:
    """The same (type, route, deployment) passes once per window; the next says how many waited."""
    clock = ManualClock()
    gate = Gate(AlertLevel.INFO, 60, clock)
    assert gate.admit(_alert()) == 0
    clock.advance(30)
    assert gate.admit(_alert()) is None
    assert gate.admit(_alert()) is None
    assert gate.admit(_alert(deployment="fallback")) == 0  # another key
    assert gate.admit(_alert(AlertType.AUTH_FAILED)) == 0  # another type
    clock.advance(30)
    assert gate.admit(_alert()) == 2


def test_log_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Each alert level logs at a matching logging level on failover.alerts."""
    sink = LogSink()
    with caplog.at_level(logging.INFO, logger="failover.alerts"):
        for level in AlertLevel:
            sink.deliver(_alert(level=level))
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING", "ERROR", "CRITICAL"]


async def test_alerter_filters_per_sink(
    webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Each sink applies its own level and dedup; the webhook gets JSON with a `text`."""
    configs = [
        AlertConfig(kind="log", dedup_seconds=0),
        AlertConfig(kind="webhook", url=webhook.url, min_level="HIGH", dedup_seconds=60),
    ]
    alerter = Alerter.from_config(configs, ManualClock())
    await alerter.start()
    with caplog.at_level(logging.INFO, logger="failover.alerts"):
        for _ in range(3):
            alerter.emit(_alert())
        alerter.emit(_alert(AlertType.MALFORMED_RESPONSE, AlertLevel.MEDIUM))
        await poll_until(lambda: bool(webhook.bodies), tries=100)
        await alerter.aclose()
    assert len([r for r in caplog.records if r.name == "failover.alerts"]) == 4
    assert len(webhook.bodies) == 1
    body = webhook.bodies[0]
    assert (
        body["text"]
        == "[CRITICAL] circuit_open route=intent deployment=main request=req_1: circuit opened"
    )
    assert (body["level"], body["type"], body["deployment"]) == ("CRITICAL", "circuit_open", "main")


async def test_dead_webhook_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A webhook on a closed port: deliver() stays instant, one log line, every failure counted."""
    failures: list[None] = []
    url = f"http://127.0.0.1:{closed_port()}/hook/s3cr3t-token"
    sink = WebhookSink(url, timeout=1.0, on_failure=lambda: failures.append(None))
    await sink.start()
    with caplog.at_level(logging.WARNING, logger="failover.observe.sinks"):
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(5):
            sink.deliver(_alert())
        assert loop.time() - started < 0.05
        await poll_until(lambda: len(failures) == 5)
        await sink.aclose(grace=0.5)
    assert len(failures) == 5
    assert sink.failures == 5
    assert sink.sent == 0
    lines = [r for r in caplog.records if "alert webhook" in r.message]
    assert len(lines) == 1
    assert "127.0.0.1" in lines[0].message
    assert "s3cr3t-token" not in caplog.text
    assert "s3cr3t-token" not in repr(sink)


async def test_webhook_queue_is_bounded() -> None:
    """Past its capacity the webhook drops alerts (counted) instead of growing."""
    failures: list[None] = []
    sink = WebhookSink("http://127.0.0.1:9/x", capacity=2, on_failure=lambda: failures.append(None))
    for _ in range(5):  # not started: nothing drains the queue
        sink.deliver(_alert())
    assert sink.dropped == 3
    assert len(failures) == 3
    await sink.aclose()
