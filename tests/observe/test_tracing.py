"""Traces: a request span with a child per attempt, GenAI attributes, losers ending later."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from failover import Gateway
from failover.config import TelemetryConfig, config_from_dict
from failover.engine.events import Event, EventKind
from failover.mock_upstream import MockUpstream
from failover.observe import Observability, Tracing
from failover.providers.redact import Redactor
from failover.types import AttemptRecord, ChatRequest, ChatResult, Usage

from .conftest import gateway_config

MESSAGES = [{"role": "user", "content": "hello there"}]
# Through the engine, then reported by hand: the way the HTTP server reports a request.
REQUEST = ChatRequest(messages=MESSAGES)


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_hedged_request_spans(mocks: tuple[MockUpstream, MockUpstream]) -> None:
    """A request span, a child per attempt; the loser's span ends after the request's."""
    main, fallback = mocks
    main.set_profile(latency="0.8")
    config = config_from_dict(
        gateway_config(main, fallback, hedge_after=0.2, deadline=5, finish_losers=4)
    )
    exporter = InMemorySpanExporter()
    obs = Observability.from_config(config, span_processor=SimpleSpanProcessor(exporter))
    await obs.start()
    try:
        async with Gateway(config, observability=obs) as gw:
            wall, started = time.time(), time.perf_counter()
            result = await gw.engine.chat(gw.route("intent"), REQUEST, request_id="req_t")
            obs.request_finished(
                request_id="req_t",
                route="intent",
                started_at_wall=wall,
                latency=time.perf_counter() - started,
                result=result,
                error=None,
            )
            assert sorted(_by_name(exporter.get_finished_spans())) == ["chat f", "chat intent"]
            for _ in range(100):
                if len(exporter.get_finished_spans()) == 3:
                    break
                await asyncio.sleep(0.05)
    finally:
        await obs.aclose()
    spans = _by_name(exporter.get_finished_spans())
    request, winner, loser = spans["chat intent"], spans["chat f"], spans["chat m"]
    assert request.parent is None
    for child in (winner, loser):
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
    assert request.end_time is not None
    assert loser.end_time is not None
    assert loser.end_time > request.end_time  # it ended for real, after the answer
    assert dict(request.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "intent",
        "gen_ai.response.model": result.completion["model"],
        "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": result.usage.completion_tokens,
        "failover.route": "intent",
        "failover.request_id": "req_t",
        "failover.outcome": "success",
        "failover.degraded": False,
        "failover.stream": False,
        "failover.attempts": 2,
        "failover.deployment": "fallback",
    }
    attributes = dict(winner.attributes or {})
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == "f"
    assert attributes["failover.deployment"] == "fallback"
    assert attributes["failover.hedge"] is True
    assert attributes["failover.retry"] == 0
    assert attributes["failover.outcome"] == "success"
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert dict(loser.attributes or {})["failover.outcome"] == "lost_completed"
    assert "gen_ai.input.messages" not in (request.attributes or {})


def _events(obs: Observability) -> None:
    """One failed attempt and one success, as the engine reports them."""
    failed = AttemptRecord("main", start=0.0)
    obs.on_event(Event(EventKind.ATTEMPT_STARTED, "intent", "req_c", 0.0, "main", failed))
    failed.end, failed.outcome, failed.error_class, failed.status = (
        0.1,
        "server_error",
        "server_error",
        500,
    )
    obs.on_event(Event(EventKind.ATTEMPT_ENDED, "intent", "req_c", 0.1, "main", failed))
    won = AttemptRecord("fallback", start=0.1)
    obs.on_event(Event(EventKind.ATTEMPT_STARTED, "intent", "req_c", 0.1, "fallback", won))
    won.end, won.outcome = 0.3, "success"
    obs.on_event(Event(EventKind.ATTEMPT_ENDED, "intent", "req_c", 0.3, "fallback", won))


def _result() -> ChatResult:
    completion = {
        "model": "f-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "the answer"}}],
    }
    return ChatResult(completion, "fallback", False, Usage(4, 2), [])


async def test_content_is_captured_only_when_asked() -> None:
    """Prompts and completions become attributes only with capture_content: true."""
    for capture in (False, True):
        config = config_from_dict(
            {
                "store": {"url": "none"},
                "telemetry": {"capture_content": capture},
                "deployments": {
                    "main": {"provider": "openai", "model": "m", "api_key": "sk-a-123456789"},
                    "fallback": {"provider": "gemini", "model": "f", "api_key": "AIzaXX"},
                },
                "routes": {"intent": {"targets": ["main", "fallback"]}},
            }
        )
        exporter = InMemorySpanExporter()
        obs = Observability.from_config(config, span_processor=SimpleSpanProcessor(exporter))
        _events(obs)
        request = ChatRequest(messages=[{"role": "user", "content": "the question"}])
        obs.request_finished(
            request_id="req_c",
            route="intent",
            started_at_wall=1000.0,
            latency=0.3,
            result=_result(),
            error=None,
            request=request,
        )
        await obs.aclose()
        spans = _by_name(exporter.get_finished_spans())
        root = dict(spans["chat intent"].attributes or {})
        failed = spans["chat m"]
        assert dict(failed.attributes or {})["error.type"] == "server_error"
        assert dict(failed.attributes or {})["http.response.status_code"] == 500
        assert failed.status.status_code.name == "ERROR"
        assert dict(spans["chat f"].attributes or {})["gen_ai.provider.name"] == "gcp.gemini"
        assert root["gen_ai.response.model"] == "f-2025"
        assert spans["chat m"].start_time == 1000 * 10**9
        assert spans["chat f"].end_time == int(1000.3 * 10**9)
        if capture:
            assert "the question" in str(root["gen_ai.input.messages"])
            assert "the answer" in str(root["gen_ai.output.messages"])
        else:
            assert "gen_ai.input.messages" not in root
            assert "gen_ai.output.messages" not in root


async def test_tracing_is_off_without_an_endpoint() -> None:
    """No endpoint, no tracer at all; an endpoint builds the OTLP/HTTP exporter (no network)."""
    assert Tracing.from_config(TelemetryConfig(), {}, Redactor()) is None
    tracing = Tracing.from_config(
        TelemetryConfig(otlp_endpoint="http://127.0.0.1:4318"), {}, Redactor()
    )
    assert tracing is not None
    await tracing.aclose(grace=2.0)
