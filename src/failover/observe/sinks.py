"""Where alerts go: a log line, or a webhook POST; each sink with its own level and dedup.

``alerts:`` in the config lists the sinks. Each has a ``min_level`` (alerts below it are not
sent) and ``dedup_seconds`` (the same ``(type, route, deployment)`` at most once per window; the
next one that passes says how many were held back). Delivery never blocks a request and never
raises into it:

- :class:`LogSink` writes one line on the ``failover.alerts`` logger, at a matching level
  (MEDIUM: WARNING, HIGH: ERROR, CRITICAL: CRITICAL), its control characters escaped (a
  provider's message in it cannot forge another line, nor clear a terminal).
- :class:`WebhookSink` queues the alert (bounded) and a background task POSTs it as JSON with a
  Slack-compatible ``text`` field, with a short timeout. A dead webhook costs one log line when
  it starts failing and one when it comes back; failures and drops are counted.

The webhook's URL is a secret (chat webhooks carry their token in it): only its host is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from failover.clock import Clock
from failover.config import AlertConfig, AlertLevel
from failover.logsafe import escape
from failover.observe.alerts import Alert

__all__ = ["AlertSink", "Alerter", "Gate", "LogSink", "WebhookSink"]

logger = logging.getLogger(__name__)
alert_logger = logging.getLogger("failover.alerts")

_LOG_LEVELS = {
    AlertLevel.INFO: logging.INFO,
    AlertLevel.MEDIUM: logging.WARNING,
    AlertLevel.HIGH: logging.ERROR,
    AlertLevel.CRITICAL: logging.CRITICAL,
}


class AlertSink(Protocol):
    """Delivers alerts somewhere; :meth:`deliver` must return at once and never raise."""

    name: str

    def deliver(self, alert: Alert) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Gate:
    """A sink's filter: ``min_level`` and per-key deduplication over ``dedup_seconds``.

    >>> from failover.clock import ManualClock
    >>> from failover.observe.alerts import AlertType
    >>> clock = ManualClock()
    >>> gate = Gate(AlertLevel.HIGH, 60, clock)
    >>> alert = Alert(AlertLevel.CRITICAL, AlertType.CIRCUIT_OPEN, None, "main", None, "open", 0)
    >>> gate.admit(alert), gate.admit(alert)
    (0, None)
    >>> clock.advance(61)
    >>> gate.admit(alert)
    1
    """

    __slots__ = ("_clock", "_seen", "dedup_seconds", "min_level")

    _MAX_KEYS = 10_000

    def __init__(self, min_level: AlertLevel, dedup_seconds: float, clock: Clock) -> None:
        self.min_level = min_level
        self.dedup_seconds = dedup_seconds
        self._clock = clock
        self._seen: dict[tuple[str, str | None, str | None], list[float]] = {}

    def admit(self, alert: Alert) -> int | None:
        """None to hold ``alert`` back; else how many of its kind were held back before it."""
        if alert.level < self.min_level:
            return None
        if self.dedup_seconds <= 0:
            return 0
        now = self._clock.now()
        seen = self._seen.get(alert.key)
        if seen is not None and now - seen[0] < self.dedup_seconds:
            seen[1] += 1
            return None
        held = int(seen[1]) if seen is not None else 0
        if seen is None and len(self._seen) >= self._MAX_KEYS:
            self._forget_old(now)
        self._seen[alert.key] = [now, 0]
        return held

    def _forget_old(self, now: float) -> None:
        stale = [k for k, (at, _) in self._seen.items() if now - at >= self.dedup_seconds]
        for key in stale or list(self._seen)[: self._MAX_KEYS // 2]:
            del self._seen[key]


class LogSink:
    """Alerts as log lines on ``failover.alerts``."""

    name = "log"

    def deliver(self, alert: Alert) -> None:
        # One line whatever the handler: the message may quote a provider (and so a client).
        alert_logger.log(_LOG_LEVELS[alert.level], "alert %s", escape(alert.text))

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return "<LogSink>"


class WebhookSink:
    """One JSON POST per alert to ``url``, from a background task, never from the request."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 3.0,
        capacity: int = 100,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.name = "webhook"
        self._url = url
        self._host = urlsplit(url).netloc.rsplit("@", 1)[-1] or "?"
        self._timeout = timeout
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=capacity)
        self._on_failure = on_failure
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.sent = 0
        self.failures = 0
        self.dropped = 0

    def deliver(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1
            self._failed("its queue is full; alerts are dropped")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="failover-alert-webhook"
            )

    async def aclose(self, grace: float = 2.0) -> None:
        """Send what is queued for at most ``grace`` seconds, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._queue.join()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                alert = await self._queue.get()
                try:
                    await self._post(session, alert)
                finally:
                    self._queue.task_done()

    async def _post(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        try:
            async with session.post(self._url, json=alert.as_dict()) as response:
                if response.status >= 400:
                    self._failed(f"it answered HTTP {response.status}")
                    return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # aiohttp's messages may quote the URL: name the kind of failure only.
            self._failed(f"{type(exc).__name__}")
            return
        self.sent += 1
        if self._failing:
            self._failing = False
            logger.warning("alert webhook %s is answering again", self._host)

    def _failed(self, why: str) -> None:
        self.failures += 1
        if self._on_failure is not None:
            self._on_failure()
        if not self._failing:
            self._failing = True
            logger.warning(
                "alert webhook %s failed (%s); counted in failover_alert_failures_total, "
                "logged again only once it answers",
                self._host,
                why,
            )

    def __repr__(self) -> str:
        return (
            f"<WebhookSink {self._host} queued={self._queue.qsize()} sent={self.sent} "
            f"failures={self.failures}>"
        )


class Alerter:
    """Hands each alert to every sink whose gate lets it through."""

    def __init__(self, sinks: Iterable[tuple[Gate, AlertSink]]) -> None:
        self.sinks = list(sinks)

    @classmethod
    def from_config(
        cls,
        configs: Iterable[AlertConfig],
        clock: Clock,
        *,
        on_failure: Callable[[str], None] | None = None,
    ) -> Alerter:
        """The sinks ``alerts:`` lists; ``on_failure(sink_name)`` counts delivery failures."""
        sinks: list[tuple[Gate, AlertSink]] = []
        for config in configs:
            gate = Gate(AlertLevel[config.min_level], config.dedup_seconds, clock)
            sink: AlertSink
            if config.kind == "webhook" and config.url:
                counted = (lambda: on_failure("webhook")) if on_failure is not None else None
                sink = WebhookSink(config.url, on_failure=counted)
            else:
                sink = LogSink()
            sinks.append((gate, sink))
        return cls(sinks)

    def emit(self, alert: Alert) -> None:
        """Deliver ``alert`` where its level and deduplication allow."""
        for gate, sink in self.sinks:
            held = gate.admit(alert)
            if held is None:
                continue
            try:
                sink.deliver(_with_held(alert, held) if held else alert)
            except Exception:
                logger.exception("alert sink %r failed", sink)

    async def start(self) -> None:
        for _, sink in self.sinks:
            await sink.start()

    async def aclose(self) -> None:
        for _, sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                logger.exception("closing alert sink %r failed", sink)

    def __repr__(self) -> str:
        return f"<Alerter sinks={[sink.name for _, sink in self.sinks]}>"


def _with_held(alert: Alert, held: int) -> Alert:
    note = f" ({held} more like it held back since the last one)"
    return Alert(
        level=alert.level,
        type=alert.type,
        route=alert.route,
        deployment=alert.deployment,
        request_id=alert.request_id,
        message=alert.message + note,
        time=alert.time,
    )
