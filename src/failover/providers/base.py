"""The one small interface every provider adapter implements.

An adapter is built once per deployment around the gateway's shared HTTP client. It takes an
OpenAI-style :class:`~failover.types.ChatRequest`, speaks its provider's wire format, and gives back
OpenAI shapes: a ``chat.completion`` dict, or an async iterator of ``chat.completion.chunk`` dicts.
Every failure leaves it as an :class:`~failover.errors.UpstreamError` carrying its class, status and
Retry-After; no exception of the HTTP library escapes. Adapters never retry: the engine decides.

The engine bounds each attempt with the deployment's ``timeout`` and cancels the call when it
loses; cancelling must close the upstream connection at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from failover.config import DeploymentConfig
from failover.types import ChatRequest, Completion, StreamChunk

__all__ = ["ChatProvider"]


class ChatProvider(Protocol):
    """A deployment's adapter: request in, completion or chunks out, typed error out."""

    @property
    def deployment(self) -> DeploymentConfig: ...

    async def complete(self, request: ChatRequest) -> Completion:
        """One non-streaming completion in OpenAI's ``chat.completion`` shape."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The completion as OpenAI ``chat.completion.chunk`` dicts; usage on the last one."""
        ...

    async def probe(self) -> None:
        """A cheap real call (list models, or a one-token completion); raises on failure."""
        ...
