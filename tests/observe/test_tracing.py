"""Traces: a request span with a child per attempt, GenAI attributes, losers ending later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import openai
import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from failover import Gateway
from failover.config import TelemetryConfig, config_from_dict
from failover.engine.events import Event, EventKind
from failover.mock_upstream import MockUpstream
from failover.observe import Observability, Tracing
from failover.observe.export import ExportBreaker, GuardedExporter
from failover.observe.tracing import traces_url
from failover.providers.redact import Redactor
from failover.server.embedded import serving
from failover.types import AttemptRecord, ChatRequest, ChatResult, Usage

from .conftest import closed_port, gateway_config, serve_app

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
            attempts: list[AttemptRecord] = []
            result = await gw.engine.chat(
                gw.route("intent"), REQUEST, request_id="req_t", attempts=attempts
            )
            obs.request_finished(
                request_id="req_t",
                route="intent",
                started_at_wall=wall,
                latency=time.perf_counter() - started,
                result=result,
                error=None,
                records=attempts,
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


def _events(obs: Observability) -> list[AttemptRecord]:
    """One failed attempt and one success, as the engine reports them: their records."""
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
    return [failed, won]


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
        records = _events(obs)
        request = ChatRequest(messages=[{"role": "user", "content": "the question"}])
        obs.request_finished(
            request_id="req_c",
            route="intent",
            started_at_wall=1000.0,
            latency=0.3,
            result=_result(),
            error=None,
            request=request,
            records=records,
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


# -- a dead OTLP endpoint ----------------------------------------------------------------------


def test_export_breaker_drops_during_a_break_that_doubles() -> None:
    """Failures open a break that doubles up to its bound; one success ends the outage."""
    breaker = ExportBreaker(first_break=5, max_break=12)
    assert breaker.allow(0.0)
    assert breaker.succeeded() is None  # nothing to recover from
    assert breaker.failed(0.0) is True  # an outage begins: say so
    assert not breaker.allow(4.9)
    breaker.dropped()
    assert breaker.allow(5.0)
    assert breaker.failed(5.0) is False  # the same outage: silent
    assert breaker.retry_at == 15.0
    assert breaker.failed(15.0) is False
    assert breaker.retry_at == 27.0  # 10 s would double to 20: bounded by 12
    assert repr(breaker) == "<ExportBreaker down lost=4 retry_at=27>"
    assert breaker.succeeded() == 4
    assert repr(breaker) == "<ExportBreaker up>"
    assert breaker.failed(30.0) is True  # a new outage starts from the first break again
    assert breaker.retry_at == 35.0


class OtlpReceiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 that answers 200, 503, or never (``mode``), and
    keeps the bodies it took (protobuf ``ExportTraceServiceRequest`` bytes)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.posts = 0
        self.bodies: list[bytes] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "503":
            return web.Response(status=503, text="collector overloaded")
        self.bodies.append(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> int:
        """Spans in the bodies taken."""
        count = 0
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                count += sum(len(scope.spans) for scope in resource.scope_spans)
        return count

    async def __aenter__(self) -> OtlpReceiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        self._runner, self.url = await serve_app(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def endpoint(kind: str) -> AsyncIterator[tuple[str, OtlpReceiver | None]]:
    """An OTLP endpoint that is down as ``kind`` says: closed port, 503, or hanging."""
    if kind == "closed":
        yield f"http://127.0.0.1:{closed_port()}", None
        return
    async with OtlpReceiver(kind) as receiver:
        yield receiver.url, receiver


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _fast_tracing(url: str, breaker: ExportBreaker, counted: list[int]) -> Tracing:
    """Tracing over the real OTLP/HTTP exporter, with a short timeout and batch delay."""
    guard = GuardedExporter(
        OTLPSpanExporter(endpoint=traces_url(url), timeout=2),
        url=traces_url(url),
        redact=Redactor(),
        on_failure=lambda: counted.append(1),
        breaker=breaker,
    )
    processor = BatchSpanProcessor(guard, schedule_delay_millis=50, max_export_batch_size=64)
    return Tracing(span_processor=processor, deployments={}, redact=Redactor(), exporter=guard)


def _spans(tracing: Tracing, count: int) -> None:
    for n in range(count):
        tracing.request_finished(
            request_id=f"req_{n}",
            route="intent",
            started_at_wall=time.time(),
            latency=0.01,
            outcome="success",
            result=None,
            records=[],
        )


async def _until(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["closed", "503", "hang"])
async def test_dead_endpoint_is_logged_once_and_every_lost_batch_counted(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Batch after batch fails: one warning in all, each lost batch counted, few tries."""
    counted: list[int] = []
    async with endpoint(kind) as (url, receiver):
        with caplog.at_level(logging.DEBUG):
            tracing = _fast_tracing(url, ExportBreaker(first_break=0.3, max_break=0.6), counted)
            for _ in range(10):  # ten batches, a try every few of them
                _spans(tracing, 64)
                await asyncio.sleep(0.25)
            await _until(lambda: tracing.export_failures >= 8, 10)
            started = time.monotonic()
            await tracing.aclose(grace=2.0)
            closing = time.monotonic() - started
    warnings = _warnings(caplog)
    assert [r.name for r in warnings] == ["failover.observe.tracing"], warnings
    assert url in warnings[0].getMessage()
    reason = {"closed": "Connection refused", "503": "Service Unavailable", "hang": "timeout"}
    assert reason[kind] in warnings[0].getMessage()
    assert len(counted) == tracing.export_failures >= 8
    assert f"lost_batches={len(counted)}" in repr(tracing)
    assert closing < 2.5
    if receiver is not None:
        assert receiver.posts < len(counted)  # the break spared the endpoint most batches


@pytest.mark.slow
async def test_endpoint_back_after_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """After a 503 outage, spans flow again; the outage and the recovery are one line each."""
    counted: list[int] = []
    async with OtlpReceiver("503") as receiver:
        with caplog.at_level(logging.INFO, logger="failover.observe.tracing"):
            tracing = _fast_tracing(
                receiver.url, ExportBreaker(first_break=0.2, max_break=0.2), counted
            )
            _spans(tracing, 64)
            await _until(lambda: tracing.export_failures >= 1, 5)
            receiver.mode = "ok"
            for _ in range(8):
                _spans(tracing, 64)
                await asyncio.sleep(0.1)
            await tracing.aclose(grace=5.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "failover.observe.tracing"]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"tracing: cannot send spans to {receiver.url}/v1/traces")
    assert lines[1].startswith(f"tracing: spans reach {receiver.url}/v1/traces again")
    assert receiver.spans() > 0
    assert receiver.spans() + 64 * len(counted) >= 9 * 64  # every span sent or counted lost


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _traffic(url: str, count: int) -> list[float]:
    """``count`` chat requests, 16 at a time, through the openai SDK; each one's seconds."""
    seconds: list[float] = []
    limit = asyncio.Semaphore(16)
    async with openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0) as client:

        async def one() -> None:
            async with limit:
                started = time.perf_counter()
                answer = await client.chat.completions.create(model="intent", messages=MESSAGES)
                seconds.append(time.perf_counter() - started)
                assert answer.choices[0].message.content

        await asyncio.gather(*(one() for _ in range(count)))
    return seconds


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["closed", "503", "hang"])
async def test_gateway_answers_on_time_while_the_otlp_endpoint_is_down(
    kind: str, mocks: tuple[MockUpstream, MockUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    """Requests are answered as fast as without tracing; one warning; closing is bounded."""
    main, fallback = mocks
    plain = gateway_config(main, fallback, alerts=[])
    async with serving(Gateway.from_dict(plain)) as server:
        without = await _traffic(server.url, 300)
    async with endpoint(kind) as (url, _):
        with caplog.at_level(logging.INFO):
            gateway = Gateway.from_dict({**plain, "telemetry": {"otlp_endpoint": url}})
            tracing = gateway.observability.tracing
            assert tracing is not None
            async with serving(gateway) as server:
                first = await _traffic(server.url, 300)  # 600 spans: a batch is due at once
                await _until(lambda: tracing.export_failures >= 1, 15)
                second = await _traffic(server.url, 300)  # while the endpoint is in its break
                started = time.monotonic()
            closing = time.monotonic() - started
    down = first + second
    assert max(down) < 2.0  # an export waits 5 s for the endpoint: never on a request's path
    assert _quantile(down, 0.9) < 10 * _quantile(without, 0.9) + 0.1
    assert [r.name for r in _warnings(caplog)] == ["failover.observe.tracing"]
    assert tracing.export_failures >= 2  # the first try, and batches dropped during the break
    assert closing < 8.0  # drain, then at most the 5 s grace for the exporter
