"""Span export that fails quietly and cheaply while the OTLP endpoint is down.

A dead endpoint (closed port, 5xx, no answer) must never slow a request, and must say so once:
:class:`GuardedExporter` wraps the SDK's OTLP exporter, logs the first failure of an outage (with
its reason) and the recovery, each once, instead of the SDK exporter's lines for every batch and
retry; counts every lost batch (``on_failure``, the metrics hook); and, through an
:class:`ExportBreaker`, drops batches at once while the endpoint is down, trying one again after
a break (5 s, doubling up to 60 s), so that the export thread is not stuck in retries and the
queue never fills.

The endpoint's URL may carry credentials (``https://user:token@...``, ``?token=``): lines and the
repr show it masked (:func:`~failover.config.secrets.redact_url`), and the reason a failure gives
is cleaned of every part of it that could be one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from failover.config.secrets import redact_url, url_secrets
from failover.providers.redact import Redactor

__all__ = ["ExportBreaker", "GuardedExporter"]

logger = logging.getLogger("failover.observe.tracing")  # the tracing subsystem's one logger

# Where the OTLP/HTTP exporter logs each failed batch and retry (opentelemetry-exporter-otlp 1.x),
# where the batch processor logs an exporter's exception, and where urllib3 logs each request
# line (query and all: a collector's token): hushed while our export runs, on its thread only.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "urllib3.connectionpool",
)
# "Transient error X encountered while exporting spans batch, retrying in 1.05s.": X is the news.
_TRANSIENT = re.compile(r"^Transient error (.*) encountered while exporting .*$", re.DOTALL)


class ExportBreaker:
    """Which span batches to send while the OTLP endpoint fails: a state machine, no I/O.

    Up, every batch is tried. The first failure opens a break (``first_break`` seconds, doubling
    after each failed try up to ``max_break``) during which batches are dropped untried; after
    it, one batch is tried. A success closes it.

    >>> breaker = ExportBreaker(first_break=5, max_break=60)
    >>> breaker.failed(now=100.0), breaker.allow(now=101.0), breaker.allow(now=105.0)
    (True, False, True)
    >>> breaker.failed(now=105.5), breaker
    (False, <ExportBreaker down lost=2 retry_at=115.5>)
    """

    def __init__(self, *, first_break: float = 5.0, max_break: float = 60.0) -> None:
        self.first_break = first_break
        self.max_break = max_break
        self.down = False
        self.lost = 0  # batches lost in the current outage
        self.retry_at = 0.0
        self._break = first_break

    def allow(self, now: float) -> bool:
        """Whether to try a batch now (else drop it and call :meth:`dropped`)."""
        return not self.down or now >= self.retry_at

    def failed(self, now: float) -> bool:
        """A batch was tried and lost; True when it begins an outage (the moment to say so)."""
        self.lost += 1
        began = not self.down
        self._break = self.first_break if began else min(2 * self._break, self.max_break)
        self.down = True
        self.retry_at = now + self._break
        return began

    def dropped(self) -> None:
        """A batch was dropped untried, during a break."""
        self.lost += 1

    def succeeded(self) -> int | None:
        """A batch was sent; the batches lost when it ends an outage, else None."""
        if not self.down:
            return None
        lost, self.lost, self.down = self.lost, 0, False
        return lost

    def __repr__(self) -> str:
        if not self.down:
            return "<ExportBreaker up>"
        return f"<ExportBreaker down lost={self.lost} retry_at={self.retry_at:g}>"


class _Hush(logging.Filter):
    """Hushes the SDK's lines about one exporter: those logged on the threads running its
    exports (the first kept as the reason of a failure), and the batch processor's "Queue
    full" while it is busy or failing (``busy``; the fact is kept in ``overflowed``)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.reason: str | None = None
        self.busy = False
        self.overflowed = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread in self.threads:
            if self.reason is None and record.levelno >= logging.WARNING:
                self.reason = _TRANSIENT.sub(r"\1", record.getMessage())
            return False
        if self.busy and str(record.msg).startswith("Queue full"):
            self.overflowed = True
            return False
        return True


class GuardedExporter(SpanExporter):
    """A span exporter that fails quietly and cheaply while its endpoint is down.

    It logs the first failure of an outage once (with the reason the wrapped exporter gave), and
    its end once; calls ``on_failure()`` for every batch lost (tried and failed, or dropped
    during a break); and consults an :class:`ExportBreaker` before each batch, so that a dead
    endpoint costs one try per break, not the SDK exporter's retries for every batch.

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> GuardedExporter(InMemorySpanExporter(), url="memory", redact=str)
    <GuardedExporter memory <ExportBreaker up> lost=0>
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        url: str,
        redact: Callable[[str], str],
        on_failure: Callable[[], None] | None = None,
        breaker: ExportBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exporter = exporter
        # The endpoint as it may be printed (lines, repr): its credentials masked. A reason may
        # quote the URL's parts on their own (requests: "url: /v1/traces?token=..."): those
        # parts are secrets too, for this exporter's own redaction.
        self.url = redact_url(url)
        self._redact = redact
        self._redact_url_parts = Redactor(url_secrets(url))
        self.on_failure = on_failure
        self.breaker = breaker if breaker is not None else ExportBreaker()
        self._clock = clock
        self.lost = 0  # batches lost since the start
        self._lock = threading.Lock()
        self._hush = _Hush()
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self._hush)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:  # the processor's thread, and a flush from another one
            if not self.breaker.allow(self._clock()):
                self.breaker.dropped()
                self._lost()
                return SpanExportResult.FAILURE
            started = self._clock()
            result, reason = self._try(spans)
            if result is SpanExportResult.SUCCESS:
                self._sent(self._clock() - started)
                return result
            if self.breaker.failed(self._clock()):
                logger.warning(
                    "tracing: cannot send spans to %s (%s); dropping them while it fails "
                    "(counted in failover_trace_export_failures_total), trying again every "
                    "%g-%g s",
                    self.url,
                    self._redact_url_parts(self._redact(reason or "no reason given"))[:400],
                    self.breaker.first_break,
                    self.breaker.max_break,
                )
            self._lost()
            return SpanExportResult.FAILURE

    def _try(self, spans: Sequence[ReadableSpan]) -> tuple[SpanExportResult, str | None]:
        """Export with the wrapped exporter's own log lines hushed; its result and reason."""
        thread = threading.get_ident()
        hush = self._hush
        hush.reason, hush.busy = None, True
        hush.threads.add(thread)
        try:
            result = self._exporter.export(spans)
        except Exception as exc:  # an exporter bug must not reach the processor's thread
            return SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        finally:
            hush.threads.discard(thread)
            hush.busy = self.breaker.down  # a failure keeps it hushed until the recovery
        return result, hush.reason

    def _sent(self, seconds: float) -> None:
        """A batch went through: say so when it ends an outage or the queue overflowed."""
        lost = self.breaker.succeeded()
        self._hush.busy = False
        if lost is not None:
            logger.info(
                "tracing: spans reach %s again; %d batches were lost while it failed",
                self.url,
                lost,
            )
        elif self._hush.overflowed:
            logger.warning(
                "tracing: the span queue overflowed while %s took %.1f s to take a batch; "
                "spans were dropped",
                self.url,
                seconds,
            )
        self._hush.overflowed = False

    def _lost(self) -> None:
        self.lost += 1
        if self.on_failure is not None:
            try:
                self.on_failure()
            except Exception:
                logger.exception("tracing: counting a lost span batch failed")

    def shutdown(self) -> None:
        try:
            self._exporter.shutdown()
        finally:
            for name in _EXPORTER_LOGGERS:
                logging.getLogger(name).removeFilter(self._hush)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def __repr__(self) -> str:
        return f"<GuardedExporter {self.url} {self.breaker!r} lost={self.lost}>"
