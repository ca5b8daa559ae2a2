"""The shared HTTP client: pooling, timeouts, refused connections, cancellation, TLS."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from failover.config import Provider
from failover.errors import ConfigError, ErrorClass, UpstreamConnectionError, UpstreamTimeout
from failover.providers import (
    AnthropicProvider,
    GeminiProvider,
    HttpClient,
    OpenAICompatProvider,
    build_provider,
)
from failover.types import ChatRequest
from tests.providers.conftest import FakeUpstream, deployment, json_answer, sse_answer, sse_data
from tests.providers.shapes import KEY

HELLO = ChatRequest(messages=[{"role": "user", "content": "hi"}])
OK = {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
CHUNK = {"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def never_answer(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_session_is_lazy_and_closed_by_aclose(upstream: FakeUpstream) -> None:
    """No session until the first request; none usable after aclose()."""
    http = HttpClient()
    assert repr(http) == "<HttpClient idle limit=1000>"
    upstream.handler = json_answer(OK)
    provider = OpenAICompatProvider(deployment("openai", upstream.url), http)
    await provider.complete(HELLO)
    assert repr(http) == "<HttpClient open limit=1000>"
    await http.aclose()
    assert http.closed
    with pytest.raises(RuntimeError, match="closed"):
        await provider.complete(HELLO)


async def test_completed_exchanges_reuse_the_pooled_connection(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """Keep-alive: sequential requests of two deployments share one connection."""
    upstream.handler = json_answer(OK)
    first = OpenAICompatProvider(deployment("openai", upstream.url, name="a"), http)
    second = OpenAICompatProvider(deployment("groq", upstream.url, name="b"), http)
    await first.complete(HELLO)
    await second.complete(HELLO)
    await first.complete(HELLO)
    assert len({r.peer for r in upstream.requests}) == 1


async def test_connection_refused(http: HttpClient) -> None:
    """Nothing listening: a connection error that names no key."""
    provider = OpenAICompatProvider(deployment("openai", f"http://127.0.0.1:{free_port()}"), http)
    with pytest.raises(UpstreamConnectionError) as caught:
        await provider.complete(HELLO)
    assert caught.value.error_class is ErrorClass.CONNECTION
    assert caught.value.deployment == "openai-test"
    assert KEY not in str(caught.value)


async def test_no_answer_within_timeout(upstream: FakeUpstream, http: HttpClient) -> None:
    """A provider that never answers hits the deployment's timeout, and the connection drops."""
    upstream.handler = never_answer
    provider = OpenAICompatProvider(deployment("openai", upstream.url, timeout=0.2), http)
    with pytest.raises(UpstreamTimeout) as caught:
        await provider.complete(HELLO)
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert isinstance(caught.value, TimeoutError)
    await upstream.wait_disconnected()


async def test_gap_between_chunks_is_bounded(upstream: FakeUpstream, http: HttpClient) -> None:
    """After the first chunk, a silence longer than the timeout is an UpstreamTimeout."""
    upstream.handler = sse_answer(sse_data(CHUNK), hang=True)
    provider = OpenAICompatProvider(deployment("openai", upstream.url, timeout=0.2), http)
    stream = provider.stream(HELLO)
    assert await anext(stream) == CHUNK
    with pytest.raises(UpstreamTimeout):
        await anext(stream)
    await upstream.wait_disconnected()


async def test_cancel_mid_stream_closes_the_connection(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """Cancelling the consumer mid-stream closes the upstream connection at once."""
    upstream.handler = sse_answer(sse_data(CHUNK), hang=True)
    provider = OpenAICompatProvider(deployment("openai", upstream.url), http)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(HELLO):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    await _cancelled(task)
    await upstream.wait_disconnected()


async def test_cancel_before_headers_closes_the_connection(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """Cancelling while waiting for the answer closes the connection too."""
    upstream.handler = never_answer
    provider = AnthropicProvider(deployment("anthropic", upstream.url), http)
    task = asyncio.create_task(provider.complete(HELLO))
    await asyncio.wait_for(upstream.received.wait(), 5)
    await _cancelled(task)
    await upstream.wait_disconnected()


async def test_abandoned_stream_closes_the_connection(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """A consumer that stops reading and closes the stream drops the connection."""
    upstream.handler = sse_answer(sse_data(CHUNK), hang=True)
    stream = GeminiProvider(deployment("gemini", upstream.url), http).stream(HELLO)
    await anext(stream)
    await stream.aclose()
    await upstream.wait_disconnected()


async def test_after_a_cut_connection_the_next_request_works(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """A closed half-read connection is not reused: the next request gets a fresh one."""
    upstream.handler = sse_answer(sse_data(CHUNK), hang=True)
    provider = OpenAICompatProvider(deployment("openai", upstream.url), http)
    stream = provider.stream(HELLO)
    await anext(stream)
    await stream.aclose()
    upstream.handler = json_answer(OK)
    assert (await provider.complete(HELLO))["choices"][0]["message"]["content"] == "ok"
    assert upstream.requests[0].peer != upstream.requests[1].peer


def test_verify_tls_false_warns_once_per_construction(
    caplog: pytest.LogCaptureFixture, http: HttpClient
) -> None:
    """verify_tls: false logs one WARNING naming the deployment, never its key."""
    caplog.set_level(logging.WARNING, logger="failover.providers")
    OpenAICompatProvider(deployment("openai", "https://x.invalid", verify_tls=False), http)
    OpenAICompatProvider(deployment("openai", "https://x.invalid", name="safe"), http)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "openai-test" in record.getMessage()
    assert "verify_tls: false" in record.getMessage()
    assert KEY not in record.getMessage()


def test_missing_ca_bundle_is_a_config_error(http: HttpClient) -> None:
    """An unreadable ca_bundle is reported with its key path at construction."""
    with pytest.raises(ConfigError) as caught:
        OpenAICompatProvider(deployment("openai", "https://x", ca_bundle="/nonexistent.pem"), http)
    assert caught.value.path == "deployments.openai-test.ca_bundle"


def test_build_provider_chooses_the_family(http: HttpClient) -> None:
    """build_provider picks the adapter by provider."""
    expected: dict[Provider, type] = {
        Provider.ANTHROPIC: AnthropicProvider,
        Provider.GEMINI: GeminiProvider,
    }
    for kind in Provider:
        built = build_provider(deployment(kind.value, "http://127.0.0.1:1"), http)
        assert type(built) is expected.get(kind, OpenAICompatProvider)
        assert built.deployment.provider is kind
    assert (
        repr(built)
        == "<OpenAICompatProvider 'openai-compatible-test' openai-compatible test-model>"
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (needs the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_upstream(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    """An HTTPS fake with the self-signed certificate; yields its base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", json_answer(OK))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_tls_is_verified_by_default(tls_upstream: str, http: HttpClient) -> None:
    """An untrusted certificate fails as a connection error."""
    provider = OpenAICompatProvider(deployment("openai", tls_upstream), http)
    with pytest.raises(UpstreamConnectionError, match="certificate"):
        await provider.complete(HELLO)


async def test_ca_bundle_trusts_the_server(
    tls_upstream: str, certificate: tuple[Path, Path], http: HttpClient
) -> None:
    """ca_bundle makes a private CA trusted."""
    dep = deployment("openai", tls_upstream, ca_bundle=str(certificate[0]))
    result = await OpenAICompatProvider(dep, http).complete(HELLO)
    assert result["choices"][0]["message"]["content"] == "ok"


async def test_verify_tls_false_accepts_any_certificate(
    tls_upstream: str, http: HttpClient
) -> None:
    """verify_tls: false skips verification."""
    dep = deployment("openai", tls_upstream, verify_tls=False)
    result = await OpenAICompatProvider(dep, http).complete(HELLO)
    assert result["choices"][0]["message"]["content"] == "ok"


async def _cancelled(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and see it end cancelled."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_large_answers_within_the_bounds_are_decoded(
    upstream: FakeUpstream, http: HttpClient
) -> None:
    """Answers over 1 MiB that providers do send are decoded whole, not taken for many small
    values: 4 MiB of prose (160,000 commas in its text) and logprobs of 2,000 tokens with their
    20 likeliest alternatives each (380,000 values in 2.7 MiB)."""
    prose = "The quick brown fox, jumping over the lazy dog, said: " * 80_000
    top = [{"token": " word", "logprob": -1.25, "bytes": [32, 119, 111, 114, 100]}] * 20
    token = {"token": " word", "logprob": -0.5, "bytes": [32, 119, 111, 114, 100]}
    logprobs = {"content": [{**token, "top_logprobs": top}] * 2_000}
    provider = OpenAICompatProvider(deployment("openai", upstream.url), http)
    message = {"role": "assistant", "content": prose}
    upstream.handler = json_answer({"id": "c", "choices": [{"index": 0, "message": message}]})
    completion = await provider.complete(HELLO)
    assert completion["choices"][0]["message"]["content"] == prose
    choice = {"index": 0, "message": {"role": "assistant", "content": "x"}, "logprobs": logprobs}
    upstream.handler = json_answer({"id": "c", "choices": [choice]})
    completion = await provider.complete(HELLO)
    assert completion["choices"][0]["logprobs"] == logprobs


async def test_tls_connections_are_kept_alive(
    certificate: tuple[Path, Path], http: HttpClient
) -> None:
    """Over TLS (1.2 and 1.3) sequential requests reuse one connection: what a TLS session may
    leave on an idle socket does not make the check before reuse drop it."""
    peers: list[object] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response(OK)

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        context.maximum_version = version
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}"
        provider = OpenAICompatProvider(
            deployment("openai", url, name=f"tls-{version.name}", ca_bundle=str(certificate[0])),
            http,
        )
        peers.clear()
        for number in range(4):
            await provider.complete(HELLO)
            if number % 2:
                await asyncio.sleep(0.05)  # idle a while: the loop has read all it was sent
        await runner.cleanup()
        assert len(peers) == 4
        assert len(set(peers)) == 1, version
