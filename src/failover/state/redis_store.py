"""The Redis edge of shared health: three scripts over one hash per deployment, errors translated.

:class:`RedisHealthStore` is the only code that talks to Redis for health. Each method is one
script call (one round trip; three when Redis forgot the script: ``EVALSHA``, ``NOSCRIPT``,
``SCRIPT LOAD``, ``EVALSHA``) bounded by ``timeout`` as a whole, and every failure of Redis or of
the network surfaces as :class:`StateUnavailable`, never as a ``redis.`` exception (STYLE habit 3).
Whether to fall back to local state is :class:`~failover.state.redis_health.RedisHealth`'s call.

A record is checked wherever it is decoded: fields as the scripts write them (a number as decimal
text, a known state and error class), then :func:`~failover.health.machine.plausible` at the
answer's ``now``, which asks only whether some policy could have left the record, never whether
this gateway's own settings could: the gateways sharing Redis may run different configs. A record
that fails is taken as absent (the fresh record), never as an error: garbage in one hash must
neither hold its deployment nor take the shared state away from every other one. It is logged
once (a warning, its fields escaped) until that deployment's record reads right again; ADMIT and
REPORT, which check it the same way in Lua, delete it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from failover.errors import ErrorClass, StateUnavailable
from failover.health import machine
from failover.health.base import DeploymentState, Report
from failover.health.machine import BreakerPolicy, BreakerRecord
from failover.state import lua

__all__ = ["AdmitAnswer", "RedisHealthStore", "ReportAnswer", "StateUnavailable", "parse_record"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FRESH = BreakerRecord()
_NUMBER = re.compile(rf"[-+.0-9eE]{{1,{lua.NUMBER_CHARACTERS}}}")
"""A number as the scripts write it (``%.17g``): what Lua's check accepts, and nothing else that
Python's ``float()`` would (``nan``, ``inf``, ``1_0``, spaces)."""


@dataclass(frozen=True, slots=True)
class AdmitAnswer:
    """What the admit script decided: shared ``now``, the new record, and the lease if a probe;
    ``reset`` when the stored record was not plausible (and was deleted)."""

    now: float
    record: BreakerRecord
    admitted: bool
    lease: float | None
    reset: bool = False


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """What the report script did: shared ``now``, the visible states before and after, the
    new record; ``reset`` as :class:`AdmitAnswer`'s."""

    now: float
    before: DeploymentState
    after: DeploymentState
    record: BreakerRecord
    reset: bool = False


def _number(value: float) -> str:
    return repr(float(value))  # the shortest text that reads back as the same double


def _float(text: str) -> float | None:
    if _NUMBER.fullmatch(text) is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_record(fields: Sequence[str]) -> BreakerRecord | None:
    """The record a script's six fields hold, or None when one is not as the scripts write it.

    ``''`` is an absent probe or error; for the four fields every write sets, it is no value.

    >>> parse_record(["circuit_open", "3", "1700000060", "60", "", "timeout"]).state
    <DeploymentState.CIRCUIT_OPEN: 'circuit_open'>
    >>> parse_record(["circuit_open", "3", "1700000060", "60", "nan", ""]) is None
    True
    """
    state, failures, until, break_seconds, probe, error = fields
    try:
        stored = DeploymentState(state)
        last_error = ErrorClass(error) if error else None
    except ValueError:
        return None
    count, ends, length = _float(failures), _float(until), _float(break_seconds)
    lease = _float(probe) if probe else None
    if count is None or not count.is_integer() or ends is None or length is None:
        return None
    if probe and lease is None:
        return None
    return BreakerRecord(
        state=stored,
        failures=int(count),
        until=ends,
        break_seconds=length,
        probe_until=lease,
        last_error=last_error,
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
        self.invalid: set[str] = set()  # deployments whose stored record did not read right

    @property
    def client(self) -> redis.Redis:
        """The gateway's one Redis client: what else shares the state (the inbound limits)
        borrows it rather than opening connections of its own."""
        return self._client

    def key(self, deployment: str) -> str:
        """The hash that holds ``deployment``'s record."""
        return f"{self.key_prefix}health:{deployment}"

    async def read(
        self,
        deployments: Sequence[str],
        *,
        shift: float = 0.0,
    ) -> tuple[float, list[BreakerRecord]]:
        """Shared ``now`` and the records of ``deployments`` (fresh ones where none is stored, or
        where the stored one is not plausible: :func:`machine.plausible`, which no policy
        decides)."""
        keys = [self.key(name) for name in deployments]
        width = lua.RECORD_FIELDS

        def parse(answer: list[str]) -> tuple[float, list[BreakerRecord]]:
            if len(answer) != 1 + width * len(keys):
                raise ValueError("a record is missing from the answer")
            now = float(answer[0])
            records = [
                self._checked(name, answer[1 + i * width : 1 + (i + 1) * width], now)
                for i, name in enumerate(deployments)
            ]
            return now, records

        return await self._run(self._read, keys, [_number(shift)], parse)

    async def admit(
        self, deployment: str, policy: BreakerPolicy, *, early: bool, shift: float = 0.0
    ) -> AdmitAnswer:
        """Run :func:`machine.admit` atomically on ``deployment``'s shared record."""
        args = [_number(shift), _number(policy.probe_lease_seconds), "1" if early else "0"]

        def parse(answer: list[str]) -> AdmitAnswer:
            now = float(answer[0])
            return AdmitAnswer(
                now=now,
                admitted=answer[1] == "1",
                lease=float(answer[2]) if answer[2] else None,
                reset=self._was_reset(deployment, answer[3]),
                record=self._checked(deployment, answer[4:], now),
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
            now = float(answer[0])
            return ReportAnswer(
                now=now,
                before=DeploymentState(answer[1]),
                after=DeploymentState(answer[2]),
                reset=self._was_reset(deployment, answer[3]),
                record=self._checked(deployment, answer[4:], now),
            )

        return await self._run(self._report, [self.key(deployment)], args, parse)

    def _checked(self, deployment: str, fields: Sequence[str], now: float) -> BreakerRecord:
        """The record ``fields`` hold if it is one the machine could have left, else the fresh
        one (logged once while it stays so)."""
        if len(fields) != lua.RECORD_FIELDS:
            raise ValueError("a record is missing from the answer")
        record = parse_record(fields)
        if record is not None and machine.plausible(record, now):
            self.invalid.discard(deployment)
            return record
        if deployment not in self.invalid:
            self.invalid.add(deployment)
            logger.warning(
                "the health record of deployment %r in Redis is not one failover writes (%s); "
                "it is taken as absent, and reset at its next update",
                deployment,
                _shown(fields),
            )
        return _FRESH

    def _was_reset(self, deployment: str, flag: str) -> bool:
        """Whether the script found the stored record not plausible (and deleted it)."""
        if flag != "1":
            return False
        if deployment not in self.invalid:  # else logged already, when it was read
            logger.warning(
                "the health record of deployment %r in Redis was not one failover writes; "
                "it was reset",
                deployment,
            )
        return True

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


def _shown(fields: Sequence[str]) -> str:
    """The fields of a foreign record for a log line: each cut short and escaped (``repr``), so
    that no newline or terminal escape in Redis reaches the log as it is."""
    names = ("state", "failures", "until", "break", "probe", "error")
    return " ".join(f"{name}={value[:40]!r}" for name, value in zip(names, fields, strict=True))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        return "no answer in time"
    # redis-py's messages name host and port and the server's error, never the password.
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"
