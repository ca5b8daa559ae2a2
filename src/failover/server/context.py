"""One HTTP request's context: who asked, under which ids, and when.

A :class:`RequestContext` is made per request by the ASGI app and travels with it explicitly (never
a context variable): the chat handler fills in the route and the answer, and hands it to the
:class:`RequestHook` (the request log, later) once the answer is given or the stream has ended.
It holds no secret: the client is named by a key fingerprint, never by its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from failover.types import ChatResult

__all__ = ["RequestContext", "RequestHook"]


@dataclass(slots=True)
class RequestContext:
    """What the request log needs to know about one HTTP request, besides its result.

    ``request_id`` is failover's own id (the ``x-request-id`` answered, the key of the record);
    ``client_request_id`` the ``x-request-id`` the client sent, if any. ``client_key_id`` is the
    fingerprint of the client's key (``key_1a2b3c4d``), None without auth; ``client`` the
    client's address. ``started`` is the loop time of arrival, ``started_wall`` the wall time.

    >>> RequestContext("req_1", None, "key_1a2b3c4d", "127.0.0.1", "/v1/chat/completions", 0.0, 0.0)
    RequestContext(request_id='req_1', ..., route=None, stream=False)
    """

    request_id: str
    client_request_id: str | None
    client_key_id: str | None
    client: str
    path: str
    started: float
    started_wall: float
    admin: bool = False
    route: str | None = None
    stream: bool = False

    def __repr__(self) -> str:
        return (
            f"RequestContext(request_id={self.request_id!r}, ..., route={self.route!r}, "
            f"stream={self.stream})"
        )


class RequestHook(Protocol):
    """Told once per chat request, when its answer was given (for a stream: when it ended).

    Exactly one of ``result`` and ``error`` is set: the engine's result (for a stream, one built
    at its end: empty completion, the answering deployment, usage from the last chunk, every
    attempt), or what the request failed with (``CancelledError`` when the client left, or when
    the gateway cut it at shutdown; an upstream error when a stream failed after its first
    chunk). It runs on the request's task: it must be quick and must not block.
    """

    def __call__(
        self, context: RequestContext, result: ChatResult | None, error: BaseException | None
    ) -> None: ...
