"""The request log's rows: one per request, one per attempt, and the record's shape.

A :class:`RequestRow` is what ``GET /v1/requests/{id}`` shows, built once when the request is
answered (:func:`request_row`); its :class:`AttemptRow` values are snapshots taken then. A loser
that finishes in the background later produces a new :class:`AttemptRow` for the same
``(request_id, seq)``, which replaces the snapshot that said ``running``.

Rows hold no secret: the client is named by a fingerprint of its key
(:func:`failover.server.auth.key_id`), never the key, and every free-form string goes through the
:class:`~failover.providers.redact.Redactor` before it is stored.

>>> from failover.types import AttemptRecord
>>> row = AttemptRow.of("req_1", 0, AttemptRecord("main", start=0.0, end=0.2, outcome="success"))
>>> row.as_dict()["end_ms"]
200.0
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from failover.config import Price
from failover.errors import failure_of
from failover.types import AttemptOutcome, AttemptRecord, ChatResult

__all__ = [
    "AttemptRow",
    "RequestRow",
    "Row",
    "cost_usd",
    "request_outcome",
    "request_row",
]

SUCCESS = "success"
DEGRADED = "degraded"
CANCELLED = "cancelled"


def cost_usd(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float:
    """The cost of one completion at ``price`` (USD per million tokens).

    >>> cost_usd(Price(input=0.05, output=0.08), 1_000_000, 500_000)
    0.09
    """
    if price is None:
        return 0.0
    total = prompt_tokens * price.input + completion_tokens * price.output
    return round(total / 1_000_000, 10)


def request_outcome(result: ChatResult | None, error: BaseException | None) -> str:
    """``success``, ``degraded``, ``cancelled`` or the error code the client was answered with.

    >>> from failover.errors import AllTargetsFailed, UpstreamTimeout
    >>> request_outcome(None, AllTargetsFailed("intent", [UpstreamTimeout("slow")]))
    'timeout'
    """
    if result is not None:
        return DEGRADED if result.degraded else SUCCESS
    if error is None or isinstance(error, asyncio.CancelledError):
        return CANCELLED
    return failure_of(error).code


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class AttemptRow:
    """One attempt as stored: times in milliseconds from the request's arrival.

    Rows are values: nobody changes one once built (they are not frozen only because a frozen
    dataclass costs five times as much to build, and every request builds them).
    """

    request_id: str
    seq: int
    deployment: str
    start_ms: float
    end_ms: float | None
    outcome: str
    error_class: str | None = None
    status: int | None = None
    hedge: bool = False
    retry: int = 0
    probe: bool = False

    @classmethod
    def of(cls, request_id: str, seq: int, record: AttemptRecord) -> AttemptRow:
        """A snapshot of the live ``record`` (the engine keeps completing losers in place)."""
        return cls(
            request_id=request_id,
            seq=seq,
            deployment=record.deployment,
            start_ms=_ms(record.start) or 0.0,
            end_ms=_ms(record.end),
            outcome=record.outcome,
            error_class=record.error_class,
            status=record.status,
            hedge=record.hedge,
            retry=record.retry,
            probe=record.probe,
        )

    @property
    def running(self) -> bool:
        return self.outcome == AttemptOutcome.RUNNING.value

    def as_dict(self) -> dict[str, Any]:
        """The attempt as a record shows it: deployment, start_ms, end_ms, outcome, details."""
        return {
            "deployment": self.deployment,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "outcome": self.outcome,
            "error_class": self.error_class,
            "status": self.status,
            "hedge": self.hedge,
            "retry": self.retry,
            "probe": self.probe,
        }


@dataclass(slots=True)
class RequestRow:
    """One request as stored; ``started_at`` is its arrival in epoch seconds (a value, as
    :class:`AttemptRow`).

    ``fallback`` is true when the answer came from a target other than the route's first.
    """

    request_id: str
    started_at: float
    route: str
    outcome: str
    latency_ms: float
    client_request_id: str | None = None
    client_key_id: str | None = None
    degraded: bool = False
    stream: bool = False
    deployment: str | None = None
    fallback: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    attempts: tuple[AttemptRow, ...] = ()

    def with_attempts(self, attempts: Sequence[AttemptRow]) -> RequestRow:
        """This row with ``attempts`` in their order (what the store read back)."""
        return RequestRow(
            **{name: getattr(self, name) for name in _REQUEST_FIELDS}, attempts=tuple(attempts)
        )

    def as_dict(self) -> dict[str, Any]:
        """The record ``GET /v1/requests/{id}`` answers."""
        return {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "time": _iso(self.started_at),
            "route": self.route,
            "client_key_id": self.client_key_id,
            "outcome": self.outcome,
            "degraded": self.degraded,
            "stream": self.stream,
            "latency_ms": self.latency_ms,
            "deployment": self.deployment,
            "fallback": self.fallback,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "attempts": [attempt.as_dict() for attempt in self.attempts],
        }


_REQUEST_FIELDS = tuple(f for f in RequestRow.__dataclass_fields__ if f != "attempts")

Row = RequestRow | AttemptRow
"""What the writer queues: a finished request (with its attempts), or one attempt's update."""


def request_row(
    *,
    request_id: str,
    route: str,
    first_target: str | None,
    started_at_wall: float,
    latency: float,
    result: ChatResult | None,
    error: BaseException | None,
    client_key_id: str | None,
    client_request_id: str | None,
    stream: bool,
    records: Sequence[AttemptRecord],
    prices: Mapping[str, Price],
    redact: Callable[[str], str],
) -> RequestRow:
    """The row of a request answered now, attempts included as they stand."""
    deployment = result.deployment if result is not None else None
    usage = result.usage if result is not None and deployment is not None else None
    prompt = usage.prompt_tokens if usage is not None else 0
    completion = usage.completion_tokens if usage is not None else 0
    price = prices.get(deployment) if deployment is not None else None
    return RequestRow(
        request_id=request_id,
        started_at=started_at_wall,
        route=route,
        # An error's code may be the provider's own words; the others are failover's.
        outcome=redact(request_outcome(result, error)) if error else request_outcome(result, None),
        latency_ms=_ms(latency) or 0.0,
        client_request_id=redact(client_request_id) if client_request_id else None,
        client_key_id=redact(client_key_id) if client_key_id else None,
        degraded=bool(result is not None and result.degraded),
        stream=stream,
        deployment=deployment,
        fallback=deployment is not None and deployment != first_target,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost_usd(price, prompt, completion),
        attempts=tuple(AttemptRow.of(request_id, i, r) for i, r in enumerate(records)),
    )
