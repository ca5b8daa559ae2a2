"""The one upstream HTTP client a Gateway shares among all its deployments, on aiohttp.

- :class:`HttpClient` owns a single :class:`aiohttp.ClientSession` with a pooled keep-alive
  connector and a DNS cache, created lazily inside the running loop and closed by ``aclose()``.
- :class:`Endpoint` is one deployment's view of it, built once: its headers, TLS context,
  timeouts and redactor, so the hot path allocates nothing that could be made ahead.
- :class:`UpstreamResponse` wraps one answer. Reading it never lets an aiohttp exception out:
  timeouts become :class:`~failover.errors.UpstreamTimeout`, everything else on the wire
  :class:`~failover.errors.UpstreamConnectionError`.

An exchange that ends with an exception (an error, a cancellation, a consumer that stopped
reading a stream) *closes* its connection; only a fully read answer goes back to the pool, so a
half-read connection is never reused.

>>> async def main(deployment):  # doctest: +SKIP
...     async with HttpClient() as http:
...         endpoint = http.endpoint(deployment, {"Authorization": "Bearer ..."})
...         async with endpoint.request("GET", endpoint.url("/models")) as response:
...             await response.raise_for_status()
...             return await response.json()
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from failover.config import DeploymentConfig
from failover.errors import (
    ConfigError,
    MalformedResponse,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from failover.providers.classify import classify_event, classify_response
from failover.providers.redact import Redactor
from failover.providers.sse import SSEEvent, iter_events

__all__ = ["Endpoint", "HttpClient", "UpstreamResponse", "api_key"]

logger = logging.getLogger("failover.providers")

JSON: Final = "application/json"
EVENT_STREAM: Final = "text/event-stream"

# An error body is read only to classify it; a proxy's megabyte of HTML needs no more than this.
_MAX_ERROR_BODY = 64 * 1024
_USER_AGENT = "failover/0.1"

_WIRE_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class HttpClient:
    """The shared upstream client: one pooled session per Gateway.

    ``limit`` caps open connections in total and ``limit_per_host`` per provider host (0: no cap
    beyond ``limit``); idle keep-alive connections live ``keepalive_timeout`` seconds; resolved
    addresses are cached ``dns_ttl`` seconds.
    """

    def __init__(
        self,
        *,
        limit: int = 1000,
        limit_per_host: int = 0,
        keepalive_timeout: float = 30.0,
        dns_ttl: int = 300,
    ) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive_timeout = keepalive_timeout
        self._dns_ttl = dns_ttl
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._insecure: ssl.SSLContext | None = None
        self._ca_contexts: dict[str, ssl.SSLContext] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use: aiohttp binds it to the loop that runs then."""
        session = self._session
        if session is None:
            if self._closed:
                raise RuntimeError("the HttpClient is closed")
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=self._dns_ttl,
                use_dns_cache=True,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                # Provider cookies (Cloudflare's) must not travel between deployments, and
                # skipping the jar spares work on every answer.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": _USER_AGENT},
                raise_for_status=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return session

    def endpoint(self, deployment: DeploymentConfig, headers: Mapping[str, str]) -> Endpoint:
        """One deployment's endpoint: ``headers`` (auth included) are sent on every request.

        The deployment's key is what the endpoint's redactor removes from every message.
        A deployment with ``verify_tls: false`` logs a WARNING here, once per construction.
        """
        return Endpoint(
            self,
            name=deployment.name or deployment.model,
            base_url=deployment.base_url,
            headers=headers,
            ssl_context=self._ssl_for(deployment),
            timeout=deployment.timeout,
            redact=Redactor([api_key(deployment)]),
        )

    async def aclose(self) -> None:
        """Close the session and every pooled connection; the client cannot be used again."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._session is None:
            state = "idle"
        else:
            state = "open"
        return f"<HttpClient {state} limit={self._limit}>"

    def _ssl_for(self, deployment: DeploymentConfig) -> ssl.SSLContext | bool:
        name = deployment.name or deployment.model
        if not deployment.verify_tls:
            logger.warning(
                "deployment %r: TLS certificate verification is OFF (verify_tls: false); "
                "its traffic, API key included, can be intercepted",
                name,
            )
            if self._insecure is None:
                # No CA store to load: nothing will be verified against it.
                insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                insecure.check_hostname = False
                insecure.verify_mode = ssl.CERT_NONE
                self._insecure = insecure
            return self._insecure
        if deployment.ca_bundle:
            context = self._ca_contexts.get(deployment.ca_bundle)
            if context is None:
                try:
                    context = ssl.create_default_context(cafile=deployment.ca_bundle)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        f"deployments.{name}.ca_bundle",
                        f"cannot load CA bundle {deployment.ca_bundle!r}: {exc}",
                    ) from None
                self._ca_contexts[deployment.ca_bundle] = context
            return context
        return True  # aiohttp's default: the system's trusted CAs, hostname checked


class Endpoint:
    """One deployment's prepared view of the shared client."""

    __slots__ = (
        "_client",
        "_headers",
        "_post_json",
        "_post_stream",
        "_ssl",
        "_timeout",
        "base_url",
        "name",
        "redact",
        "timeout",
    )

    def __init__(
        self,
        client: HttpClient,
        *,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | bool,
        timeout: float,
        redact: Redactor,
    ) -> None:
        self._client = client
        self.name = name
        self.base_url = base_url
        # The three header sets an adapter ever sends, built once.
        self._headers = {"Accept": JSON, **headers}
        self._post_json = {**self._headers, "Content-Type": JSON}
        self._post_stream = {**self._post_json, "Accept": EVENT_STREAM}
        self._ssl = ssl_context
        self.timeout = timeout
        # Connect (pool wait included) and every gap between reads are bounded by the
        # deployment's timeout; the engine bounds the whole attempt.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self.redact = redact

    def url(self, path: str) -> URL:
        """``base_url + path`` parsed once; adapters keep the result for every request."""
        return URL(self.base_url + path)

    def request(
        self,
        method: str,
        url: URL,
        body: bytes | None = None,
        *,
        stream: bool = False,
    ) -> Exchange:
        """An exchange to use as ``async with endpoint.request(...) as response``.

        ``body`` is already-encoded JSON; ``stream`` asks for an event stream.
        """
        if body is None:
            headers = self._headers
        else:
            headers = self._post_stream if stream else self._post_json
        return Exchange(self, method, url, body, headers)

    async def post_json(self, url: URL, body: bytes) -> Any:
        """POST ``body`` and return the JSON answer; a non-2xx answer raises its classed error."""
        async with self.request("POST", url, body) as response:
            await response.raise_for_status()
            return await response.json()

    @contextlib.asynccontextmanager
    async def post_stream(self, url: URL, body: bytes) -> AsyncIterator[UpstreamResponse]:
        """POST ``body`` asking for an event stream; a non-2xx answer raises its classed error.

        Leaving the block early (an error, a consumer that stopped reading) closes the connection.
        """
        async with self.request("POST", url, body, stream=True) as response:
            await response.raise_for_status()
            yield response

    def event_error(self, payload: Any) -> UpstreamError:
        """The classed error for an error object a provider sent inside a 200 or a stream."""
        return classify_event(payload, deployment=self.name, redact=self.redact, now=time.time())

    def connection_error(self, exc: BaseException) -> UpstreamError:
        """Translate an aiohttp or socket exception into our tree (the one place it happens)."""
        detail = self.redact(str(exc) or type(exc).__name__)
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(
                f"no answer within {self.timeout:g}s ({detail})", deployment=self.name
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamConnectionError(f"response cut: {detail}", deployment=self.name)
        return UpstreamConnectionError(f"connection failed: {detail}", deployment=self.name)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} {self.redact(self.base_url)} timeout={self.timeout:g}s>"


class Exchange:
    """One request and its response, as an async context manager."""

    __slots__ = ("_body", "_endpoint", "_headers", "_method", "_response", "_url")

    def __init__(
        self,
        endpoint: Endpoint,
        method: str,
        url: URL,
        body: bytes | None,
        headers: dict[str, str],
    ) -> None:
        self._endpoint = endpoint
        self._method = method
        self._url = url
        self._body = body
        self._headers = headers
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        endpoint = self._endpoint
        try:
            # aiohttp closes the connection itself when this await is cancelled or fails.
            response = await endpoint._client.session().request(
                self._method,
                self._url,
                data=self._body,
                headers=self._headers,
                ssl=endpoint._ssl,
                timeout=endpoint._timeout,
                # A redirect could carry the key to another host; an answer is expected here.
                allow_redirects=False,
            )
        except _WIRE_ERRORS as exc:
            raise endpoint.connection_error(exc) from None
        self._response = response
        return UpstreamResponse(response, endpoint)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        response = self._response
        if response is None:
            return
        if exc_type is None:
            response.release()
        else:
            # Cancelled, failed, or abandoned mid-stream: the connection is in an unknown state
            # (and the provider may still be generating, at our expense). Drop it at once.
            response.close()


class UpstreamResponse:
    """One upstream answer; every read translates wire failures into our errors."""

    __slots__ = ("_endpoint", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, endpoint: Endpoint) -> None:
        self._response = response
        self._endpoint = endpoint
        self.status: int = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self._response.content_type

    async def read(self, limit: int | None = None) -> bytes:
        """The body (at most ``limit`` bytes when given)."""
        try:
            if limit is None:
                return await self._response.read()
            parts: list[bytes] = []
            size = 0
            content = self._response.content
            while size < limit:
                part = await content.readany()
                if not part:
                    break
                parts.append(part)
                size += len(part)
            return b"".join(parts)[:limit]
        except _WIRE_ERRORS as exc:
            raise self._endpoint.connection_error(exc) from None

    async def json(self) -> Any:
        """The body as JSON; a wrong content type or invalid JSON is a MalformedResponse."""
        content_type = self.content_type
        if not _is_json(content_type):
            raise MalformedResponse(
                f"expected a JSON body, got content type {content_type!r}",
                deployment=self._endpoint.name,
                status=self.status,
            )
        body = await self.read()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise MalformedResponse(
                "the body is not valid JSON", deployment=self._endpoint.name, status=self.status
            ) from None

    async def error(self) -> UpstreamError:
        """The classed error for a non-2xx answer (its body read, up to a bound)."""
        body = await self.read(_MAX_ERROR_BODY)
        return classify_response(
            self.status,
            body,
            self.headers,
            deployment=self._endpoint.name,
            redact=self._endpoint.redact,
            now=time.time(),
        )

    async def raise_for_status(self) -> None:
        """Raise the classed error unless the status is 2xx."""
        if not self.ok:
            raise await self.error()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive."""
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except _WIRE_ERRORS as exc:
            raise self._endpoint.connection_error(exc) from None

    def events(self) -> AsyncIterator[SSEEvent]:
        """The body as Server-Sent Events; anything but an event stream is a MalformedResponse."""
        content_type = self.content_type
        if content_type != EVENT_STREAM:
            raise MalformedResponse(
                f"expected an event stream, got content type {content_type!r}",
                deployment=self._endpoint.name,
                status=self.status,
            )
        return iter_events(self.chunks())

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.content_type} from {self._endpoint.name!r}>"


def api_key(deployment: DeploymentConfig) -> str:
    """The deployment's key in clear (``""`` without one): for its auth header, nowhere else."""
    return deployment.api_key.get_secret_value() if deployment.api_key is not None else ""


def _is_json(content_type: str) -> bool:
    return content_type == JSON or content_type.endswith("+json")
