"""One ASGI request/answer exchange: what was read of the request, and how to answer it.

The app reads the few headers it needs in one pass (:meth:`Exchange.read_headers`), then hands
the exchange to the endpoint's handler, which reads the body within the size limit and answers.
``started`` records whether the status line went out, so that an unexpected error is answered 500
only while that is still possible.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from failover.server.answers import ErrorAnswer, Header
from failover.server.auth import KEY_HEADERS, presented_key

__all__ = ["BodyTooLarge", "ClientGone", "Exchange", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_MAX_CLIENT_REQUEST_ID = 200


class BodyTooLarge(Exception):
    """The request body is over ``max_body_bytes`` (by its Content-Length, or as read)."""


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class Exchange:
    """One request: the ASGI triple, the headers the gateway reads, and the answer's progress."""

    __slots__ = (
        "client_request_id",
        "content_length",
        "key",
        "key_header",
        "receive",
        "scope",
        "send",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = False
        self.key: bytes | None = None
        self.key_header: bytes | None = None
        self.content_length: int | None = None
        self.client_request_id: str | None = None

    def read_headers(self) -> None:
        """Read the client's key, Content-Length and x-request-id, in one pass."""
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    self.content_length = None  # the HTTP parser already refused a bad one
            elif name in KEY_HEADERS:
                # Authorization wins over x-api-key and api-key, in whatever order they came.
                if self.key_header != b"authorization":
                    key = presented_key(name, value)
                    if key is not None:
                        self.key, self.key_header = key, name
            elif name == b"x-request-id":
                self.client_request_id = value.decode("latin-1")[:_MAX_CLIENT_REQUEST_ID]

    @property
    def client_address(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "unknown"

    async def read_body(self, limit: int) -> bytes:
        """The whole body, never more than ``limit`` bytes of it held; raises
        :class:`BodyTooLarge` or :class:`ClientGone`."""
        if self.content_length is not None and self.content_length > limit:
            raise BodyTooLarge
        receive = self.receive
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):  # the usual case: one piece
            if len(body) > limit:
                raise BodyTooLarge
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            piece = message.get("body", b"")
            size += len(piece)
            if size > limit:
                raise BodyTooLarge
            parts.append(piece)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def answer(self, status: int, headers: list[Header], body: bytes) -> None:
        """Send a whole answer (``headers`` must hold its content type and length)."""
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def error(self, answer: ErrorAnswer) -> None:
        """Send an error answer."""
        await self.answer(answer.status, answer.headers, answer.body)
