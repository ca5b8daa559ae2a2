"""The values that travel through failover: requests, results, usage and attempt records.

Completions and stream chunks keep OpenAI's Chat Completions shapes as plain dicts: that is what
the HTTP gateway sends and what users of the library already know, and it spares a conversion on
the hot path. Adapters translate other providers' wire formats into these shapes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NATIVE",
    "AttemptOutcome",
    "AttemptRecord",
    "ChatRequest",
    "ChatResult",
    "Completion",
    "Native",
    "StreamChunk",
    "Usage",
]

Completion = dict[str, Any]
"""An OpenAI ``chat.completion`` object."""

StreamChunk = dict[str, Any]
"""An OpenAI ``chat.completion.chunk`` object."""


NATIVE = "x_failover_native"
"""The key under which a completion or a stream chunk carries what the provider itself sent, when
the request came in on that provider's own API (:class:`Native`): the surface of that API sends
it as it is (thinking blocks and their signatures, cache usage, reasoning items: nothing lost in
a translation), every other surface drops the key and uses the OpenAI shape beside it. A
completion carries the provider's whole answer object; a chunk, the list of the provider's
events (each an ``(event name, data object)`` pair) it was translated from."""


@dataclass(frozen=True, slots=True)
class Native:
    """A request as it came in on a provider family's own API (``family``: ``anthropic`` for the
    Messages API, ``openai-responses`` for the Responses API), for a deployment of that family to
    send unchanged but for ``model``. ``headers`` are the client's headers that family reads
    (``anthropic-beta``, ``anthropic-version``)."""

    family: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One OpenAI-style chat request, independent of the deployment that will run it.

    ``params`` holds every other field of the OpenAI body (``temperature``, ``max_tokens``,
    ``tools``, ...) except ``model``, ``messages`` and ``stream``, which adapters set themselves.
    A request that came in on another API is translated into this shape; ``native`` then keeps
    it as it came, for a deployment of that API's own family (:class:`Native`).

    >>> ChatRequest(messages=[{"role": "user", "content": "hi"}], params={"top_p": 1})
    ChatRequest(messages=[{'role': 'user', 'content': 'hi'}], params={'top_p': 1}, native=None)
    """

    messages: list[dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    native: Native | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage:
        """Read an OpenAI ``usage`` object; missing or odd fields count as zero."""
        if not usage:
            return cls()
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        return cls(
            prompt_tokens=prompt if isinstance(prompt, int) else 0,
            completion_tokens=completion if isinstance(completion, int) else 0,
        )

    def to_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


class AttemptOutcome(enum.StrEnum):
    """How one attempt ended, as records name it.

    An error class (``server_error``, ``rate_limit``, ...) is stored as its own name; these are the
    outcomes that are not an error class.
    """

    SUCCESS = "success"
    CANCELLED = "cancelled"
    LOST_COMPLETED = "lost_completed"
    LOST_FAILED = "lost_failed"
    RUNNING = "running"


@dataclass(slots=True)
class AttemptRecord:
    """One call to one deployment, as seen from the request's arrival.

    ``start`` and ``end`` are seconds from arrival; ``outcome`` is an :class:`AttemptOutcome` value
    or an error class name. ``hedge`` marks an attempt started because another was late;
    ``retry`` counts earlier attempts on the same deployment within the request.
    """

    deployment: str
    start: float
    end: float | None = None
    outcome: str = AttemptOutcome.RUNNING.value
    error_class: str | None = None
    status: int | None = None
    hedge: bool = False
    retry: int = 0
    probe: bool = False

    def __repr__(self) -> str:
        end = "…" if self.end is None else f"{self.end:.3f}"
        return f"<Attempt {self.deployment!r} {self.start:.3f}-{end} {self.outcome}>"


@dataclass(slots=True)
class ChatResult:
    """What :meth:`failover.Gateway.chat` returns.

    ``completion`` is the full OpenAI-shaped answer (for a degraded answer, one built from the
    route's default response), ``deployment`` the one that answered (``None`` when degraded) and
    ``attempts`` every attempt of the request, losers still running in the background included
    (their records are completed in place when they finish).
    """

    completion: Completion
    deployment: str | None
    degraded: bool
    usage: Usage
    attempts: list[AttemptRecord]
    request_id: str = ""

    @property
    def text(self) -> str:
        """The first choice's message content ('' when it has none)."""
        choices = self.completion.get("choices") or ()
        if not choices:
            return ""
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) else ""
