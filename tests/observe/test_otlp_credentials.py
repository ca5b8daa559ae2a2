"""An OTLP endpoint with credentials in its URL: spans go where it says, no line shows them.

The collector is a raw asyncio server on 127.0.0.1 that keeps each request's line and headers,
so the test sees exactly where the SDK's exporter (the real OTLP/HTTP one, built by
:meth:`~failover.observe.Tracing.from_config`) POSTed: ``/v1/traces`` joined to the path, before
the query, which is kept. When it refuses (a 401 quoting the request line back, as proxies do)
or its port is closed (requests quotes the path and query), the one warning the exporter logs
names the endpoint with its user info and query values masked, and holds none of them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator

import pytest

from failover.config import TelemetryConfig
from failover.observe import Tracing
from failover.providers.redact import Redactor
from tests.observe.conftest import closed_port

USER = "otel-user-7Kq"
PASSWORD = "hunter2-Pw-9Xz3"
TOKEN = "t0ken-Tenant-5Rb8Qm"
SECRETS = (USER, PASSWORD, TOKEN)


class Collector:
    """An OTLP/HTTP receiver that records request lines and headers; ``refuse`` answers 401."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.lines: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.lines.append(line)
                self.headers.append(headers)
                if self.refuse:
                    body = f"unauthorized: {line}".encode()
                    status = b"401 Unauthorized"
                else:
                    body, status = b"", b"200 OK"
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Collector:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    async with Collector() as receiver:
        yield receiver


def _endpoint(port: int) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/otel/?token={TOKEN}&tenant=acme"


def _tracing(endpoint: str) -> Tracing:
    tracing = Tracing.from_config(TelemetryConfig(otlp_endpoint=endpoint), {}, Redactor())
    assert tracing is not None
    return tracing


async def _export_one(tracing: Tracing) -> None:
    """One request span, sent now (the SDK's export blocks: off this loop, the collector's)."""
    tracing.request_finished(
        request_id="req_1",
        route="intent",
        started_at_wall=time.time(),
        latency=0.01,
        outcome="success",
        result=None,
        records=[],
    )
    await asyncio.to_thread(tracing.force_flush, 10_000)


def _shown(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


async def test_spans_are_posted_to_the_path_before_the_query(collector: Collector) -> None:
    """``/v1/traces`` joins the endpoint's path; its query and user info still travel."""
    tracing = _tracing(_endpoint(collector.port))
    await _export_one(tracing)
    await tracing.aclose(grace=5.0)
    assert collector.lines == [f"POST /otel/v1/traces?token={TOKEN}&tenant=acme HTTP/1.1"]
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert collector.headers[0]["authorization"] == f"Basic {basic}"
    assert _shown(repr(tracing)) == []


# A closed port costs the SDK exporter its retries (seconds): slow.
@pytest.mark.parametrize("down", ["refused", pytest.param("closed", marks=pytest.mark.slow)])
async def test_a_failing_endpoint_is_logged_without_its_credentials(
    down: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure's warning names the endpoint masked, and no reason quotes a credential."""
    async with Collector(refuse=True) as refusing:
        port = refusing.port if down == "refused" else closed_port()
        with caplog.at_level(logging.DEBUG):
            tracing = _tracing(_endpoint(port))
            await _export_one(tracing)
            await tracing.aclose(grace=5.0)
    if down == "refused":
        assert refusing.lines == [f"POST /otel/v1/traces?token={TOKEN}&tenant=acme HTTP/1.1"]
    warnings = [r for r in caplog.records if r.name == "failover.observe.tracing"]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    line = warnings[0].getMessage()
    masked = f"http://***@127.0.0.1:{port}/otel/v1/traces?token=***&tenant=***"
    assert line.startswith(f"tracing: cannot send spans to {masked} (")
    assert ("401" if down == "refused" else "Connection refused") in line
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert _shown(log) == [], log
