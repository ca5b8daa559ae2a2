"""OpenTelemetry traces: one span per request, one child span per attempt.

Only when ``telemetry.otlp_endpoint`` is set; otherwise nothing here is even built (the
:class:`~failover.observe.observability.Observability` holds ``None``), so tracing costs nothing.

Spans are made when the request is answered, from the attempt records and their real times (the
engine's hot path creates no span). An attempt still running then, a loser kept by
``finish_losers``, gets its span at once and ends it when the loser really ends, after the
request's span. Attributes follow the OpenTelemetry GenAI semantic conventions
(``gen_ai.operation.name=chat``, ``gen_ai.provider.name`` and the older ``gen_ai.system``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``error.type``) plus failover's own (``failover.route``,
``failover.deployment``, ``failover.outcome``, ``failover.hedge``, ``failover.retry``,
``failover.degraded``, ``failover.request_id``). Prompts and completions
(``gen_ai.input.messages``, ``gen_ai.output.messages``) are added only with
``telemetry.capture_content: true``; no key or auth header is ever an attribute.

Export uses the SDK's :class:`~opentelemetry.sdk.trace.export.BatchSpanProcessor` with the
OTLP/HTTP exporter: spans are queued and sent by the SDK's own thread, never on the event loop.
The :class:`~opentelemetry.sdk.trace.TracerProvider` is failover's own, never the global one, so
an application's own tracing setup is left alone.

A dead endpoint (closed port, 5xx, no answer) never slows a request, and says so once: the
exporter sits behind a :class:`~failover.observe.export.GuardedExporter` (logged once, counted,
batches dropped at once while it is down). Shutdown waits ``grace`` seconds at most, even on an
endpoint that hangs.

Backends that take OTLP/HTTP:

- **Jaeger** (v1.35+ or v2): ``otlp_endpoint: http://127.0.0.1:4318``; run it with
  ``docker run -p 16686:16686 -p 4318:4318 jaegertracing/jaeger``.
- **Langfuse**: ``otlp_endpoint: https://cloud.langfuse.com/api/public/otel`` (or your host's
  ``/api/public/otel``), with the exporter's standard variable
  ``OTEL_EXPORTER_OTLP_HEADERS="Authorization=Basic <base64 of public_key:secret_key>"``; it
  reads the ``gen_ai.*`` attributes as generations (set ``capture_content: true`` to see the
  prompts there).
- Any OpenTelemetry Collector, Grafana Tempo, Honeycomb, Arize Phoenix: their OTLP/HTTP URL.

``/v1/traces`` is appended to the endpoint's path unless it already ends with it (before the query,
which is kept). The endpoint may hold credentials (``https://user:token@...``, ``?token=``): every
log line and repr shows it through :func:`~failover.config.secrets.redact_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from failover.config import DeploymentConfig, TelemetryConfig
from failover.observe.export import GuardedExporter
from failover.observe.records import DEGRADED, SUCCESS
from failover.observe.tracker import LoserEnd
from failover.types import AttemptOutcome, AttemptRecord, ChatRequest, ChatResult

__all__ = ["Tracing", "traces_url"]

logger = logging.getLogger(__name__)

_NS = 1_000_000_000

# Provider names as the GenAI conventions spell them, where they differ from ours.
_SEMCONV_PROVIDER = {"gemini": "gcp.gemini", "openai-compatible": "openai"}

_ENDED_WELL = frozenset({AttemptOutcome.SUCCESS.value, AttemptOutcome.LOST_COMPLETED.value})


_EXPORT_TIMEOUT = 5.0  # seconds, one batch (the exporter's retries included)


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a configured endpoint: ``/v1/traces`` joined to its path,
    before its query (a collector's token may travel there), which is kept as it is.

    >>> traces_url("http://127.0.0.1:4318"), traces_url("http://c:4318/v1/traces")
    ('http://127.0.0.1:4318/v1/traces', 'http://c:4318/v1/traces')
    >>> traces_url("https://u:p@c/otel/?token=t")
    'https://u:p@c/otel/v1/traces?token=t'
    """
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/traces"):
        path += "/v1/traces"
    return urlunsplit(parts._replace(path=path))


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


async def _in_daemon_thread(work: Callable[[], object], seconds: float) -> bool:
    """Run ``work`` in a thread of its own; whether it ended within ``seconds``.

    Not ``asyncio.to_thread``: its pool's threads are joined when the process exits, so a call
    stuck on a dead endpoint would hold the exit too. A daemon thread is left behind instead.
    """
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()

    def run() -> None:
        try:
            work()
        except Exception:
            logger.exception("tracing: stopping the exporter failed")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(ended.set)

    threading.Thread(target=run, name="failover-tracing-shutdown", daemon=True).start()
    try:
        async with asyncio.timeout(seconds):
            await ended.wait()
    except TimeoutError:
        return False
    return True


class Tracing:
    """Request and attempt spans on a tracer provider of failover's own.

    ``span_processor`` receives every span (tests pass a ``SimpleSpanProcessor`` around an
    ``InMemorySpanExporter``); :meth:`from_config` builds the batching OTLP/HTTP one, around a
    :class:`GuardedExporter` given as ``exporter`` (for :meth:`count_export_failures`).
    """

    def __init__(
        self,
        *,
        span_processor: SpanProcessor,
        deployments: Mapping[str, DeploymentConfig],
        redact: Callable[[str], str],
        service_name: str = "failover",
        capture_content: bool = False,
        max_open_losers: int = 10_000,
        exporter: GuardedExporter | None = None,
    ) -> None:
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
        )
        self._provider.add_span_processor(span_processor)
        self._tracer = self._provider.get_tracer("failover")
        self._deployments = deployments
        self._redact = redact
        self._capture = capture_content
        self._losers: OrderedDict[tuple[str, int], tuple[Span, float]] = OrderedDict()
        self._max_open_losers = max_open_losers
        self._exporter = exporter

    @classmethod
    def from_config(
        cls,
        telemetry: TelemetryConfig,
        deployments: Mapping[str, DeploymentConfig],
        redact: Callable[[str], str],
    ) -> Tracing | None:
        """The tracing ``telemetry:`` asks for, or None when it sets no ``otlp_endpoint``."""
        if not telemetry.otlp_endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = traces_url(telemetry.otlp_endpoint)
        exporter = GuardedExporter(
            OTLPSpanExporter(endpoint=url, timeout=_EXPORT_TIMEOUT), url=url, redact=redact
        )
        return cls(
            span_processor=BatchSpanProcessor(exporter),
            deployments=deployments,
            redact=redact,
            service_name=telemetry.service_name,
            capture_content=telemetry.capture_content,
            exporter=exporter,
        )

    def count_export_failures(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` for each span batch the endpoint did not take (the metrics hook;
        nothing is counted with a processor passed in by hand)."""
        if self._exporter is not None:
            self._exporter.on_failure = callback

    @property
    def export_failures(self) -> int:
        """Span batches lost so far (failed, or dropped while the endpoint was down)."""
        return self._exporter.lost if self._exporter is not None else 0

    def request_finished(
        self,
        *,
        request_id: str,
        route: str,
        started_at_wall: float,
        latency: float,
        outcome: str,
        result: ChatResult | None,
        records: Sequence[AttemptRecord],
        request: ChatRequest | None = None,
        stream: bool = False,
    ) -> None:
        """Make the request's span and its attempts' (losers' are ended later)."""
        winner = result.deployment if result is not None else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": route,
            "failover.route": route,
            "failover.request_id": request_id,
            "failover.outcome": outcome,
            "failover.degraded": outcome == DEGRADED,
            "failover.stream": stream,
            "failover.attempts": len(records),
        }
        if winner is not None:
            attributes["failover.deployment"] = winner
        if result is not None:
            attributes.update(self._answer(result))
        if self._capture and request is not None:
            attributes["gen_ai.input.messages"] = self._json(request.messages)
        span = self._tracer.start_span(
            f"chat {route}",
            kind=SpanKind.INTERNAL,
            start_time=_ns(started_at_wall),
            attributes=attributes,
        )
        if outcome not in (SUCCESS, DEGRADED):
            span.set_status(Status(StatusCode.ERROR, outcome))
            span.set_attribute("error.type", outcome)
        parent = trace.set_span_in_context(span)
        won = False
        for seq, record in enumerate(records):
            attempt = self._tracer.start_span(
                f"chat {self._model(record.deployment)}",
                context=parent,
                kind=SpanKind.CLIENT,
                start_time=_ns(started_at_wall + record.start),
                attributes=self._attempt(request_id, route, record),
            )
            is_winner = (
                not won
                and result is not None
                and record.deployment == winner
                and record.outcome == AttemptOutcome.SUCCESS.value
            )
            if is_winner and result is not None:
                won = True
                attempt.set_attributes(self._answer(result))
            if record.end is None:
                self._keep_loser((request_id, seq), attempt, started_at_wall)
            else:
                self._end_attempt(attempt, record, started_at_wall)
        span.end(end_time=_ns(started_at_wall + latency))

    def loser_ended(self, loser: LoserEnd) -> None:
        """End the span of a loser that finished in the background."""
        kept = self._losers.pop((loser.request_id, loser.seq), None)
        if kept is None:
            return
        span, started_at_wall = kept
        span.set_attribute("failover.outcome", loser.record.outcome)
        self._end_attempt(span, loser.record, started_at_wall)

    async def aclose(self, grace: float = 5.0) -> None:
        """End the spans of losers still open, send what is queued, and stop the exporter."""
        for span, _ in self._losers.values():
            span.end()
        self._losers.clear()
        # The SDK's flush and shutdown block on the exporter's HTTP calls: off the loop, and
        # given up on after grace (a hanging endpoint), so that closing stays bounded.
        if not await _in_daemon_thread(self._provider.shutdown, grace):
            logger.warning("tracing: the exporter did not finish within %.0fs", grace)

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Send every finished span now (blocking; for tests and shutdown)."""
        return self._provider.force_flush(timeout_millis)

    def _attempt(self, request_id: str, route: str, record: AttemptRecord) -> dict[str, Any]:
        deployment = self._deployments.get(record.deployment)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "failover.route": route,
            "failover.deployment": record.deployment,
            "failover.request_id": request_id,
            "failover.outcome": record.outcome,
            "failover.hedge": record.hedge,
            "failover.retry": record.retry,
            "failover.probe": record.probe,
        }
        if deployment is not None:
            provider = _SEMCONV_PROVIDER.get(deployment.provider.value, deployment.provider.value)
            attributes["gen_ai.provider.name"] = provider
            attributes["gen_ai.system"] = provider
            attributes["gen_ai.request.model"] = deployment.model
            host = urlsplit(deployment.base_url).hostname
            if host:
                attributes["server.address"] = host
        return attributes

    def _end_attempt(self, span: Span, record: AttemptRecord, started_at_wall: float) -> None:
        if record.error_class is not None:
            span.set_attribute("error.type", record.error_class)
        if record.status is not None:
            span.set_attribute("http.response.status_code", record.status)
        if record.outcome not in _ENDED_WELL:
            span.set_status(Status(StatusCode.ERROR, record.outcome))
        end = record.end if record.end is not None else record.start
        span.end(end_time=_ns(started_at_wall + end))

    def _answer(self, result: ChatResult) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": result.usage.completion_tokens,
        }
        model = result.completion.get("model")
        if isinstance(model, str) and model:
            # The provider's own words, like an error's: a span never carries a key it echoed.
            attributes["gen_ai.response.model"] = self._redact(model)
        if self._capture:
            messages = [
                choice.get("message")
                for choice in result.completion.get("choices") or ()
                if isinstance(choice, dict)
            ]
            attributes["gen_ai.output.messages"] = self._json(messages)
        return attributes

    def _model(self, deployment: str) -> str:
        config = self._deployments.get(deployment)
        return config.model if config is not None else deployment

    def _keep_loser(self, key: tuple[str, int], span: Span, started_at_wall: float) -> None:
        self._losers[key] = (span, started_at_wall)
        while len(self._losers) > self._max_open_losers:
            _, (oldest, _) = self._losers.popitem(last=False)
            oldest.end()

    def _json(self, value: object) -> str:
        return self._redact(json.dumps(value, ensure_ascii=False, default=str))

    def __repr__(self) -> str:
        export = "" if self._exporter is None else f" lost_batches={self._exporter.lost}"
        return f"<Tracing open_losers={len(self._losers)} capture_content={self._capture}{export}>"
