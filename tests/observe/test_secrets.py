"""No secret anywhere: records, spans, alerts, log lines and metrics never hold a key.

Errors here are made to quote the provider key (as real providers do in their messages), the
client sends a key-like request id, and the webhook URL carries its token; then every output is
searched for them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from failover.config import config_from_dict
from failover.engine.events import Event, EventKind
from failover.errors import (
    AllTargetsFailed,
    ErrorClass,
    MalformedResponse,
    UpstreamStatusError,
)
from failover.health.base import DeploymentState
from failover.health.breaker import Transition
from failover.observe import Observability, open_store
from failover.types import AttemptRecord, ChatRequest

from .conftest import SECRET_KEY, WebhookReceiver, poll_until

CLIENT_KEY = "sk-client-Th1sIsTheClientKey77"
ADMIN_KEY = "admin-Sup3rSecretAdminKey"


async def test_no_secret_in_any_output(
    tmp_path: Path, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys quoted by errors and clients end up nowhere: record, span, alert, log or metric."""
    config = config_from_dict(
        {
            "server": {"api_keys": [CLIENT_KEY], "admin_key": ADMIN_KEY},
            "store": {"url": f"sqlite:///{tmp_path / 'log.db'}"},
            "alerts": [
                {"kind": "log", "dedup_seconds": 0},
                {"kind": "webhook", "url": webhook.url, "dedup_seconds": 0},
            ],
            "deployments": {
                "main": {"provider": "openai", "model": "m", "api_key": SECRET_KEY},
                "fallback": {"provider": "groq", "model": "f", "api_key": SECRET_KEY + "-2"},
            },
            "routes": {"intent": {"targets": ["main", "fallback"], "hedge_after": 1.0}},
        }
    )
    exporter = InMemorySpanExporter()
    obs = Observability.from_config(config, span_processor=SimpleSpanProcessor(exporter))
    await obs.start()
    with caplog.at_level(logging.DEBUG):
        _drive(obs)
        await poll_until(lambda: len(webhook.bodies) >= 5)
        record = await obs.get_record("req_s")
        metrics = obs.metrics_text().decode()
        await obs.aclose()
    store = open_store(config.store.url)
    assert store is not None
    try:
        stored = await store.get("req_s")
    finally:
        await store.aclose()
    assert record is not None
    assert stored is not None
    spans = [
        json.dumps({"name": s.name, "attributes": dict(s.attributes or {})}, default=str)
        for s in exporter.get_finished_spans()
    ]
    alerts = json.dumps(webhook.bodies)
    outputs = {
        "record": json.dumps(record),
        "stored": json.dumps(stored.as_dict()),
        "spans": "\n".join(spans),
        "webhook": alerts,
        "log": caplog.text,
        "metrics": metrics,
    }
    assert len(webhook.bodies) >= 5
    assert len(spans) == 3
    assert "[REDACTED]" in alerts
    assert "[REDACTED]" in outputs["record"]
    for name, text in outputs.items():
        for secret in (SECRET_KEY, CLIENT_KEY, ADMIN_KEY, "T0KEN-in-the-url"):
            assert secret not in text, f"{secret!r} found in the {name}"


def _drive(obs: Observability) -> None:
    """A request whose errors quote keys, as a careless provider's would."""
    main = AttemptRecord("main", start=0.0)
    obs.on_event(Event(EventKind.ATTEMPT_STARTED, "intent", "req_s", 0.0, "main", main))
    main.end, main.outcome, main.error_class = 0.1, "malformed", "malformed"
    malformed = MalformedResponse(f"body echoes key {SECRET_KEY}", deployment="main")
    obs.on_event(Event(EventKind.ATTEMPT_ENDED, "intent", "req_s", 0.1, "main", main, malformed))
    obs.on_event(Event(EventKind.PRIMARY_TIMEOUT, "intent", "req_s", 1.0, "main"))
    fallback = AttemptRecord("fallback", start=0.1)
    obs.on_event(Event(EventKind.ATTEMPT_STARTED, "intent", "req_s", 0.1, "fallback", fallback))
    fallback.end, fallback.outcome, fallback.error_class, fallback.status = (
        0.2, "bad_request", "bad_request", 400,
    )  # fmt: skip
    bad = UpstreamStatusError(
        f"Incorrect API key provided: {SECRET_KEY}-2",
        status=400,
        error_class=ErrorClass.BAD_REQUEST,
        code=f"invalid_{CLIENT_KEY}",
    )
    obs.on_event(Event(EventKind.ATTEMPT_ENDED, "intent", "req_s", 0.2, "fallback", fallback, bad))
    obs.on_event(
        Event(EventKind.BAD_REQUEST_TRANSLATION, "intent", "req_s", 0.2, "fallback", error=bad)
    )
    every = AllTargetsFailed("intent", [malformed, bad])
    obs.on_event(Event(EventKind.ALL_FAILED, "intent", "req_s", 0.2, error=every))
    obs.on_transition(
        Transition("main", DeploymentState.AVAILABLE, DeploymentState.CIRCUIT_OPEN,
                   ErrorClass.AUTH, 60.0)
    )  # fmt: skip
    obs.request_finished(
        request_id="req_s",
        route="intent",
        started_at_wall=1000.0,
        latency=0.2,
        result=None,
        error=bad,
        client_key_id=f"key_{ADMIN_KEY}",
        client_request_id=f"mine-{CLIENT_KEY}",
        request=ChatRequest(messages=[{"role": "user", "content": "hi"}]),
        records=[main, fallback],
    )
