"""The Redis edge of shared health: three scripts over one hash per deployment, errors translated.

:class:`RedisHealthStore` is the only code that talks to Redis for health. Each method is one
script call (one round trip; three when Redis forgot the script: ``EVALSHA``, ``NOSCRIPT``,
``SCRIPT LOAD``, ``EVALSHA``) bounded by ``timeout`` as a whole, and every failure of Redis or of
the network surfaces as :class:`StateUnavailable`, never as a ``redis.`` exception (STYLE habit 3).
Whether to fall back to local state is :class:`~failover.state.redis_health.RedisHealth`'s call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from failover.errors import ErrorClass, FailoverError
from failover.health.base import DeploymentState, Report
from failover.health.machine import BreakerPolicy, BreakerRecord
from failover.state import lua

__all__ = ["AdmitAnswer", "RedisHealthStore", "ReportAnswer", "StateUnavailable"]

T = TypeVar("T")


class StateUnavailable(FailoverError):
    """Redis did not answer in time or answered an error; the message names no URL or secret."""


@dataclass(frozen=True, slots=True)
class AdmitAnswer:
    """What the admit script decided: shared ``now``, the new record, and the lease if a probe."""

    now: float
    record: BreakerRecord
    admitted: bool
    lease: float | None


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """What the report script did: shared ``now``, the visible states before and after, the
    new record."""

    now: float
    before: DeploymentState
    after: DeploymentState
    record: BreakerRecord


def _number(value: float) -> str:
    return repr(float(value))  # the shortest text that reads back as the same double


def _decode(fields: Sequence[str]) -> BreakerRecord:
    state, failures, until, break_seconds, probe, error = fields
    return BreakerRecord(
        state=DeploymentState(state),
        failures=int(failures),
        until=float(until),
        break_seconds=float(break_seconds),
        probe_until=float(probe) if probe else None,
        last_error=ErrorClass(error) if error else None,
    )


class _Script:
    """One Lua script, run by SHA; loaded on the first ``NOSCRIPT`` (a new or restarted Redis)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class RedisHealthStore:
    """Health records in Redis under ``{key_prefix}health:{deployment}``.

    ``round_trips`` counts the commands sent (for benchmarks and tests of the hot path). The
    client never retries by itself: one slow Redis must cost one ``timeout``, not several.

    >>> store = RedisHealthStore("redis://127.0.0.1:6379/0", key_prefix="demo:")
    >>> store.key("groq-llama")
    'demo:health:groq-llama'
    """

    def __init__(self, url: str, *, key_prefix: str = "failover:", timeout: float = 0.1) -> None:
        if timeout <= 0:
            raise ValueError("the Redis timeout must be positive")
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.round_trips = 0
        self._client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            client_name="failover-health",
            # RESP2: with RESP3, redis-py 8 turns on maintenance notifications, which skip the
            # check that drops a pooled connection the server closed (a restarted Redis).
            protocol=2,
        )
        self._read = _Script(lua.READ)
        self._admit = _Script(lua.ADMIT)
        self._report = _Script(lua.REPORT)

    def key(self, deployment: str) -> str:
        """The hash that holds ``deployment``'s record."""
        return f"{self.key_prefix}health:{deployment}"

    async def read(
        self, deployments: Sequence[str], *, shift: float = 0.0
    ) -> tuple[float, list[BreakerRecord]]:
        """Shared ``now`` and the records of ``deployments`` (fresh ones where none is stored)."""
        keys = [self.key(name) for name in deployments]
        width = lua.RECORD_FIELDS

        def parse(answer: list[str]) -> tuple[float, list[BreakerRecord]]:
            records = [_decode(answer[i : i + width]) for i in range(1, len(answer), width)]
            if len(records) != len(keys):
                raise ValueError("a record is missing from the answer")
            return float(answer[0]), records

        return await self._run(self._read, keys, [_number(shift)], parse)

    async def admit(
        self, deployment: str, policy: BreakerPolicy, *, early: bool, shift: float = 0.0
    ) -> AdmitAnswer:
        """Run :func:`machine.admit` atomically on ``deployment``'s shared record."""
        args = [_number(shift), _number(policy.probe_lease_seconds), "1" if early else "0"]

        def parse(answer: list[str]) -> AdmitAnswer:
            return AdmitAnswer(
                now=float(answer[0]),
                admitted=answer[1] == "1",
                lease=float(answer[2]) if answer[2] else None,
                record=_decode(answer[3:]),
            )

        return await self._run(self._admit, [self.key(deployment)], args, parse)

    async def report(
        self,
        deployment: str,
        policy: BreakerPolicy,
        outcome: Report,
        *,
        lease: float | None,
        shift: float = 0.0,
    ) -> ReportAnswer:
        """Run :func:`machine.report` atomically on ``deployment``'s shared record."""
        args = [
            _number(shift),
            "" if outcome.error_class is None else outcome.error_class.value,
            "" if outcome.retry_after is None else _number(outcome.retry_after),
            "1" if outcome.cancelled else "0",
            "" if lease is None else _number(lease),
            str(policy.failure_threshold),
            _number(policy.recovery_seconds),
            _number(policy.max_recovery_seconds),
            _number(policy.rate_limit_cooldown),
        ]

        def parse(answer: list[str]) -> ReportAnswer:
            return ReportAnswer(
                now=float(answer[0]),
                before=DeploymentState(answer[1]),
                after=DeploymentState(answer[2]),
                record=_decode(answer[3:]),
            )

        return await self._run(self._report, [self.key(deployment)], args, parse)

    async def _run(
        self, script: _Script, keys: list[str], args: list[str], parse: Callable[[list[str]], T]
    ) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    self.round_trips += 1
                    answer = await self._client.evalsha(script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    self.round_trips += 2
                    await self._client.script_load(script.source)
                    answer = await self._client.evalsha(script.sha, len(keys), *keys, *args)
            return parse(str(answer).split(" "))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StateUnavailable(_describe(exc)) from exc
        except (ValueError, TypeError, IndexError) as exc:  # a record not written by us
            raise StateUnavailable(f"unreadable health record: {type(exc).__name__}") from exc

    async def drop_idle_connections(self) -> None:
        """Close the pooled connections no call is using: after an outage they may be dead."""
        with contextlib.suppress(RedisError, OSError):
            await self._client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        """Close the connections; errors on the way out are of no interest."""
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"<RedisHealthStore prefix={self.key_prefix!r} timeout={self.timeout:g}s>"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        return "no answer in time"
    # redis-py's messages name host and port and the server's error, never the password.
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"
