"""The one upstream HTTP client a Gateway shares among all its deployments.

- :class:`HttpClient` owns the keep-alive connection pools (:class:`~failover.providers.wire.Wire`,
  failover's own HTTP/1.1 client, made for this traffic), created lazily inside the running
  loop and closed by ``aclose()``, and the TLS contexts.
- :class:`Endpoint` is one deployment's view of it, built once: its origin, the bytes of its
  request heads, TLS context, timeout and redactor, so the hot path allocates nothing that could
  be made ahead.
- :class:`UpstreamResponse` wraps one answer. Reading it never lets a wire exception out:
  timeouts become :class:`~failover.errors.UpstreamTimeout`, everything else on the wire
  :class:`~failover.errors.UpstreamConnectionError`, with two exceptions: a body over its bound
  is a :class:`~failover.errors.MalformedResponse` naming the bound, and a request that found no
  free connection in time is a :class:`~failover.errors.ConnectionUnavailable` (the upstream was
  never asked: the engine does not count it against the deployment's health).

Every read an upstream can make long is bounded: a body read whole (a completion, a models list)
by ``max_body`` (:data:`MAX_BODY` by default; a Content-Length above it fails before a byte is
read), an error body by 64 KiB (the rest is never read: the connection is dropped), an event
stream's lines and events by :data:`~failover.providers.sse.MAX_EVENT`. What a JSON body costs
once decoded is bounded too, by the values it may hold (:data:`MAX_JSON_VALUES`): bytes alone
do not bound it, a value of two bytes decoding to an object of up to a hundred.

An exchange that ends with an exception (an error, a cancellation, a consumer that stopped
reading a stream) *closes* its connection; only a fully read answer goes back to the pool, so a
half-read connection is never reused.

>>> async def main(deployment):  # doctest: +SKIP
...     async with HttpClient() as http:
...         endpoint = http.endpoint(deployment, {"Authorization": "Bearer ..."})
...         async with endpoint.request("GET", endpoint.target("/models")) as response:
...             await response.raise_for_status()
...             return await response.json()
"""

from __future__ import annotations

import contextlib
import errno
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from failover.config import DeploymentConfig
from failover.errors import (
    ConfigError,
    ConnectionUnavailable,
    MalformedResponse,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from failover.providers.classify import classify_event, classify_response
from failover.providers.redact import Redactor
from failover.providers.sse import SSEEvent, iter_events
from failover.providers.wire import (
    MAX_BODY,
    BadResponse,
    BodyCut,
    BodyTooLarge,
    Origin,
    PoolTimeout,
    Wire,
    WireResponse,
)
from failover.version import VERSION

__all__ = [
    "DEFAULT_POOL_TIMEOUT",
    "MAX_BODY",
    "MAX_JSON_VALUES",
    "Endpoint",
    "HttpClient",
    "RequestTarget",
    "UpstreamResponse",
    "api_key",
]

logger = logging.getLogger("failover.providers")

JSON: Final = "application/json"
EVENT_STREAM: Final = "text/event-stream"

# An error body is read only to classify it; a proxy's megabyte of HTML needs no more than this.
_MAX_ERROR_BODY = 64 * 1024
_USER_AGENT = f"failover/{VERSION}"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ACCEPT_JSON = f"Accept: {JSON}\r\n".encode()
_POST_JSON = _ACCEPT_JSON + f"Content-Type: {JSON}\r\n".encode()
_POST_STREAM = f"Accept: {EVENT_STREAM}\r\nContent-Type: {JSON}\r\n".encode()

_LOCAL_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""Socket errors that say this process or machine ran short, whatever the provider's state."""
_WIRE_ERRORS = (OSError, TimeoutError)  # what the wire raises (BodyCut, BadResponse included)

DEFAULT_POOL_TIMEOUT = 2.0
"""The longest a request waits for a free connection to its origin (and never more than half its
deployment's ``timeout``, so that the wait ends with its own error, not the attempt's timeout)."""

MAX_JSON_VALUES: Final = 1 << 19
"""The values (objects, arrays, and their members: an object's key and value count as one) a
JSON body read whole may hold, 524,288.

Each decodes to a Python object of its own, whatever its size in the text: ``{},`` is 3 bytes
and 72 decoded, ``"ab",`` 5 and 59, a member with a key of its own about 106, so 16 MiB of empty
objects decode to 384 MiB (24x) and of short strings to 190 MiB. At this bound the values of a
body cost at most about 55 MiB, beside its text. A completion holds tens of values, a models
list a few thousand; a long text answer is one value. What reaches it: logprobs with
``top_logprobs: 20`` (about 190 values a token) past some 2,700 tokens.

The values are counted before decoding, at C speed, from above: every member but a container's
first follows a comma and every container opens with a bracket, so a body holds at most
``commas + brackets + 1`` values (those inside strings are counted too: prose has a comma every
50 bytes or so, under the bound up to 25 MiB). A value takes two bytes at least, its comma
included, so a body under twice the bound in bytes (1 MiB) cannot be over it, and is not counted:
a normal answer is read as fast as before."""

_INVALID: Final = object()  # what json() holds for a body that is not JSON
_TOO_MANY: Final = object()  # what json() holds for a body that may hold too many values


class HttpClient:
    """The shared upstream client: one set of keep-alive pools per Gateway.

    ``limit`` caps each origin's open connections (one provider's hung connections never take
    another's); a request waits at most ``pool_timeout`` seconds for one (see
    :data:`DEFAULT_POOL_TIMEOUT`). Idle keep-alive connections live ``keepalive_timeout``
    seconds. A body read whole may take ``max_body`` bytes, and, read as JSON,
    ``max_json_values`` values (:data:`MAX_JSON_VALUES`).
    """

    def __init__(
        self,
        *,
        limit: int = 1000,
        keepalive_timeout: float = 30.0,
        max_body: int = MAX_BODY,
        max_json_values: int = MAX_JSON_VALUES,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        self._limit = limit
        self._keepalive_timeout = keepalive_timeout
        self.max_body = max_body
        self.max_json_values = max_json_values
        self.pool_timeout = pool_timeout
        self._wire: Wire | None = None
        self._closed = False
        self._verified: ssl.SSLContext | None = None
        self._insecure: ssl.SSLContext | None = None
        self._ca_contexts: dict[str, ssl.SSLContext] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def wire(self) -> Wire:
        """The connection pools, created on first use."""
        wire = self._wire
        if wire is None:
            if self._closed:
                raise RuntimeError("the HttpClient is closed")
            wire = self._wire = Wire(limit=self._limit, keepalive_timeout=self._keepalive_timeout)
        return wire

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
        """Close every pooled connection; the client cannot be used again."""
        self._closed = True
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.aclose()

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
        elif self._wire is None:
            state = "idle"
        else:
            state = "open"
        return f"<HttpClient {state} limit={self._limit}>"

    def _ssl_for(self, deployment: DeploymentConfig) -> ssl.SSLContext:
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
        if self._verified is None:
            # The system's trusted CAs, hostname checked.
            self._verified = ssl.create_default_context()
        return self._verified


class RequestTarget:
    """One URL of an endpoint, split once into what the wire needs: its origin and the bytes
    of its request heads (method line, Host and the endpoint's headers), one per method."""

    __slots__ = ("_heads", "origin", "url")

    def __init__(self, url: URL, origin: Origin, headers: bytes) -> None:
        self.url = url
        self.origin = origin
        target = url.raw_path_qs.encode("ascii")
        host = url.raw_host or ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        if url.explicit_port is not None and url.explicit_port != _DEFAULT_PORTS[url.scheme]:
            host = f"{host}:{url.explicit_port}"
        tail = b" HTTP/1.1\r\nHost: " + host.encode("idna") + b"\r\n" + headers
        self._heads = {
            method: method.encode("ascii") + b" " + target + tail for method in ("GET", "POST")
        }

    def head(self, method: str, body: bytes | None, extra: bytes = b"") -> bytes:
        """The request head: its lines, ``extra`` header lines, and the blank line."""
        length = b"Content-Length: %d\r\n" % len(body) if body is not None else b""
        return self._heads[method] + extra + length + b"\r\n"

    def __repr__(self) -> str:
        return f"<RequestTarget {self.url}>"


class Endpoint:
    """One deployment's prepared view of the shared client."""

    __slots__ = (
        "_client",
        "_headers",
        "_ssl",
        "base_url",
        "max_body",
        "max_json_values",
        "name",
        "pool_wait",
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
        ssl_context: ssl.SSLContext,
        timeout: float,
        redact: Redactor,
    ) -> None:
        self._client = client
        self.name = name
        self.base_url = base_url
        # Every header the deployment sends, as bytes, once. "identity": the wire decodes no
        # content coding, so none may be used.
        every = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **headers}
        for header, value in every.items():
            if any(c in value for c in "\r\n\0"):
                # A key pasted with its newline would split the request (and show its tail).
                raise ConfigError(
                    f"deployments.{name}", f"the {header} header holds a line break or NUL"
                )
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in every.items()).encode("latin-1")
        self._ssl = ssl_context
        # Connecting, and every silence while an answer is awaited or read, are bounded by the
        # deployment's timeout; the engine bounds the whole attempt. A wait for a free
        # connection ends well before that, with an error that is not the provider's.
        self.timeout = timeout
        self.pool_wait = min(client.pool_timeout, timeout / 2)
        self.max_body = client.max_body
        self.max_json_values = client.max_json_values
        self.redact = redact

    def target(self, path: str) -> RequestTarget:
        """``base_url + path``, prepared once; adapters keep it for every request."""
        url = URL(self.base_url + path)
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ConfigError(
                f"deployments.{self.name}.api_base", f"not an http(s) URL: {self.base_url!r}"
            )
        https = url.scheme == "https"
        origin = Origin(
            url.raw_host, url.port or _DEFAULT_PORTS[url.scheme], self._ssl if https else None
        )
        return RequestTarget(url, origin, self._headers)

    def request(
        self,
        method: str,
        target: RequestTarget,
        body: bytes | None = None,
        *,
        stream: bool = False,
    ) -> Exchange:
        """An exchange to use as ``async with endpoint.request(...) as response``.

        ``body`` is already-encoded JSON; ``stream`` asks for an event stream.
        """
        if body is None:
            head = target.head(method, None, _ACCEPT_JSON)
        else:
            head = target.head(method, body, _POST_STREAM if stream else _POST_JSON)
        return Exchange(self, target.origin, head, body)

    async def post_json(self, target: RequestTarget, body: bytes) -> Any:
        """POST ``body`` and return the JSON answer; a non-2xx answer raises its classed error."""
        async with self.request("POST", target, body) as response:
            await response.raise_for_status()
            return await response.json()

    @contextlib.asynccontextmanager
    async def post_stream(
        self, target: RequestTarget, body: bytes
    ) -> AsyncIterator[UpstreamResponse]:
        """POST ``body`` asking for an event stream; a non-2xx answer raises its classed error.

        Leaving the block early (an error, a consumer that stopped reading) closes the connection.
        """
        async with self.request("POST", target, body, stream=True) as response:
            await response.raise_for_status()
            yield response

    def event_error(self, payload: Any) -> UpstreamError:
        """The classed error for an error object a provider sent inside a 200 or a stream."""
        return classify_event(payload, deployment=self.name, redact=self.redact, now=time.time())

    def connection_error(self, exc: BaseException, status: int | None = None) -> UpstreamError:
        """Translate a wire or socket exception into our tree (the one place it happens);
        ``status`` is the answer's, when one had begun.

        Raised ``from None``, ours still refers to ``exc`` as its context: ``exc`` loses its
        traceback here, which nobody is shown and which would keep the reader's frames (and
        what they hold) alive as long as ours.
        """
        exc.__traceback__ = None
        if isinstance(exc, BodyTooLarge):
            return MalformedResponse(
                f"the answer's body is over {_size(exc.limit)} (the client's max_body bound)",
                deployment=self.name,
                status=status,
            )
        detail = self.redact(str(exc) or type(exc).__name__)
        if isinstance(exc, PoolTimeout) or (
            isinstance(exc, OSError) and exc.errno in _LOCAL_SHORTAGES
        ):
            # Our own shortage (connections, file descriptors, buffers), not the provider's.
            return ConnectionUnavailable(detail, deployment=self.name)
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(
                f"no answer within {self.timeout:g}s ({detail})", deployment=self.name
            )
        if isinstance(exc, BodyCut):
            return UpstreamConnectionError(f"response cut: {detail}", deployment=self.name)
        if isinstance(exc, BadResponse):
            return UpstreamConnectionError(f"bad answer: {detail}", deployment=self.name)
        return UpstreamConnectionError(f"connection failed: {detail}", deployment=self.name)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} {self.redact(self.base_url)} timeout={self.timeout:g}s>"


class Exchange:
    """One request and its response, as an async context manager."""

    __slots__ = ("_body", "_endpoint", "_head", "_origin", "_response")

    def __init__(self, endpoint: Endpoint, origin: Origin, head: bytes, body: bytes | None) -> None:
        self._endpoint = endpoint
        self._origin = origin
        self._head = head
        self._body = body
        self._response: WireResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        endpoint = self._endpoint
        try:
            # The wire closes the connection itself when this await is cancelled or fails.
            response = await endpoint._client.wire().request(
                self._origin,
                self._head,
                self._body,
                silence=endpoint.timeout,
                wait=endpoint.pool_wait,
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

    __slots__ = ("_endpoint", "_headers", "_response", "status")

    def __init__(self, response: WireResponse, endpoint: Endpoint) -> None:
        self._response = response
        self._endpoint = endpoint
        self.status: int = response.status
        self._headers: CIMultiDictProxy[str] | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The answer's headers, case-insensitive (built on first use: errors need them)."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(
                CIMultiDict(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in self._response.headers
                )
            )
        return self._headers

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without its parameters (``application/octet-stream``
        when the answer names none)."""
        raw = self._response.content_type
        if not raw:
            return "application/octet-stream"
        return raw.split(b";", 1)[0].strip().lower().decode("latin-1")

    async def read(self, limit: int | None = None) -> bytes:
        """The body: all of it, which may not be over the client's ``max_body`` (a
        MalformedResponse naming the bound), or its first ``limit`` bytes when given (the rest
        is never read)."""
        response = self._response
        try:
            if limit is None:
                return await response.read(self._endpoint.max_body)
            parts: list[bytes] = []
            size = 0
            while size < limit:
                part = await response.readany()
                if not part:
                    break
                parts.append(part)
                size += len(part)
            return b"".join(parts)[:limit]
        except _WIRE_ERRORS as exc:
            raise self._endpoint.connection_error(exc, self.status) from None

    async def json(self) -> Any:
        """The body as JSON; a wrong content type or invalid JSON is a MalformedResponse."""
        content_type = self.content_type
        if not _is_json(content_type):
            raise MalformedResponse(
                f"expected a JSON body, got content type {content_type!r}",
                deployment=self._endpoint.name,
                status=self.status,
            )
        # The body is never a local here (a failure raised below must not keep it alive).
        endpoint = self._endpoint
        payload = _decode(await self.read(), endpoint.max_json_values)
        if payload is _INVALID:
            raise MalformedResponse(
                "the body is not valid JSON", deployment=endpoint.name, status=self.status
            )
        if payload is _TOO_MANY:
            raise MalformedResponse(
                f"the answer's JSON may hold over {endpoint.max_json_values} values (commas and "
                "brackets counted; the client's bound)",
                deployment=endpoint.name,
                status=self.status,
            )
        return payload

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
        response = self._response
        try:
            while True:
                chunk = await response.readany()
                if not chunk:
                    return
                yield chunk
        except _WIRE_ERRORS as exc:
            raise self._endpoint.connection_error(exc, self.status) from None

    def events(self) -> AsyncIterator[SSEEvent]:
        """The body as Server-Sent Events; anything but an event stream is a MalformedResponse."""
        content_type = self.content_type
        if content_type != EVENT_STREAM:
            raise MalformedResponse(
                f"expected an event stream, got content type {content_type!r}",
                deployment=self._endpoint.name,
                status=self.status,
            )
        return iter_events(self.chunks(), deployment=self._endpoint.name)

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.content_type} from {self._endpoint.name!r}>"


def api_key(deployment: DeploymentConfig) -> str:
    """The deployment's key in clear (``""`` without one): for its auth header, nowhere else."""
    return deployment.api_key.get_secret_value() if deployment.api_key is not None else ""


def _decode(body: bytes, most_values: int) -> Any:
    """``body`` decoded; :data:`_INVALID` if it is not JSON, :data:`_TOO_MANY` if it may hold
    more than ``most_values`` values (see :data:`MAX_JSON_VALUES`: only a body of twice as many
    bytes can, so a smaller one is not counted)."""
    if len(body) >= 2 * most_values and (
        body.count(b",") + body.count(b"{") + body.count(b"[") >= most_values
    ):
        return _TOO_MANY
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # not chained anywhere: it keeps the whole document (doc)
        return _INVALID


def _is_json(content_type: str) -> bool:
    return content_type == JSON or content_type.endswith("+json")


def _size(count: int) -> str:
    """``33554432`` as ``32 MiB``; a count that is not a whole number of KiB or MiB in bytes."""
    for unit, name in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if count >= unit and count % unit == 0:
            return f"{count // unit} {name}"
    return f"{count} bytes"
