"""Rows of the request log: outcome, cost, fallback, the record's shape, client fingerprints."""

from __future__ import annotations

import asyncio
from typing import Any

from failover.config import Price
from failover.errors import (
    AllTargetsFailed,
    ErrorClass,
    NoTargetAvailable,
    UpstreamStatusError,
    UpstreamTimeout,
)
from failover.observe.records import (
    AttemptRow,
    RequestRow,
    cost_usd,
    request_outcome,
    request_row,
)
from failover.providers.redact import Redactor
from failover.types import AttemptRecord, ChatResult, Usage

PRICES = {"main": Price(input=1.0, output=2.0), "fallback": Price(input=10.0, output=20.0)}


def _result(deployment: str | None, *, degraded: bool = False) -> ChatResult:
    return ChatResult(
        completion={"model": "f", "choices": []},
        deployment=deployment,
        degraded=degraded,
        usage=Usage(prompt_tokens=1000, completion_tokens=500),
        attempts=[],
    )


def _row(result: ChatResult | None, error: BaseException | None = None, **extra: Any) -> RequestRow:
    records = [
        AttemptRecord("main", start=0.0),
        AttemptRecord("fallback", start=0.2, end=0.5, outcome="success", hedge=True),
    ]
    arguments: dict[str, Any] = {
        "request_id": "req_1",
        "route": "intent",
        "first_target": "main",
        "started_at_wall": 1_700_000_000.25,
        "latency": 0.51,
        "result": result,
        "error": error,
        "client_key_id": "key_abc",
        "client_request_id": "client-7",
        "stream": False,
        "records": records,
        "prices": PRICES,
        "redact": Redactor(),
        **extra,
    }
    return request_row(**arguments)


def test_fallback_answer_row() -> None:
    """An answer from the second target is a fallback, priced at that target's price."""
    row = _row(_result("fallback"))
    assert row.outcome == "success"
    assert row.fallback
    assert row.deployment == "fallback"
    assert row.cost_usd == 0.02  # 1000 * 10 / 1e6 + 500 * 20 / 1e6
    assert (row.prompt_tokens, row.completion_tokens) == (1000, 500)
    assert row.latency_ms == 510.0


def test_record_shape() -> None:
    """The record has SPEC's fields, times in ms from arrival, a running loser as such."""
    record = _row(_result("fallback")).as_dict()
    assert record["time"] == "2023-11-14T22:13:20.250Z"
    assert record["route"] == "intent"
    assert record["client_request_id"] == "client-7"
    assert record["attempts"] == [
        {
            "deployment": "main",
            "start_ms": 0.0,
            "end_ms": None,
            "outcome": "running",
            "error_class": None,
            "status": None,
            "hedge": False,
            "retry": 0,
            "probe": False,
        },
        {
            "deployment": "fallback",
            "start_ms": 200.0,
            "end_ms": 500.0,
            "outcome": "success",
            "error_class": None,
            "status": None,
            "hedge": True,
            "retry": 0,
            "probe": False,
        },
    ]


def test_degraded_answer_costs_nothing() -> None:
    """The default response is `degraded`, with no deployment, tokens or cost."""
    row = _row(_result(None, degraded=True))
    assert row.outcome == "degraded"
    assert row.degraded
    assert row.deployment is None
    assert not row.fallback
    assert (row.prompt_tokens, row.cost_usd) == (0, 0.0)


def test_error_outcomes_are_the_answered_codes() -> None:
    """An error answer is recorded as the code the client got."""
    timeouts = AllTargetsFailed("intent", [UpstreamTimeout("slow"), UpstreamTimeout("slow")])
    assert request_outcome(None, timeouts) == "timeout"
    assert request_outcome(None, NoTargetAvailable("intent", 3.0)) == "circuit_open"
    bad = UpstreamStatusError("bad", status=400, error_class=ErrorClass.BAD_REQUEST, code="x_bad")
    assert request_outcome(None, bad) == "x_bad"
    assert request_outcome(None, asyncio.CancelledError()) == "cancelled"
    assert request_outcome(None, RuntimeError("bug")) == "internal_error"


def test_secrets_are_redacted_from_free_text() -> None:
    """A key in a client-chosen field is stored as [REDACTED]."""
    row = _row(
        _result("main"), client_request_id="id-sk-live-abcdefghijkl", redact=Redactor(["zzzz9"])
    )
    assert "sk-live" not in str(row.as_dict())
    assert row.fallback is False


def test_cost() -> None:
    """Cost is per million tokens; no price, no cost."""
    assert cost_usd(Price(input=0.05, output=0.08), 2_000_000, 1_000_000) == 0.18
    assert cost_usd(None, 10, 10) == 0.0


def test_attempt_row_is_a_snapshot() -> None:
    """An attempt row does not change when the live record is completed later."""
    record = AttemptRecord("main", start=0.0)
    row = AttemptRow.of("req_1", 0, record)
    record.end, record.outcome = 3.0, "lost_completed"
    assert row.running
    assert row.end_ms is None
