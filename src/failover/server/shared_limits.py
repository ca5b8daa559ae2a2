"""Inbound rate limits shared by every gateway through Redis (``state.backend: redis``).

The GCRA decision of :func:`failover.server.limits.gcra` runs inside Redis, in one Lua script per
request (one round trip, atomic, on Redis' own clock so that gateways on different hosts agree).
Each budget is one key, ``{key_prefix}limit:{path}:{client}``, holding the theoretical arrival
time and expiring when it passes (a client back to a full budget costs no memory). What is under
that key may be anyone's: a value our ``SET`` could not have left (not a decimal number, nan,
inf, in the past, or further ahead than one period, or a key of another type) is a full budget,
and a key found without a TTL is given one, so that garbage neither refuses a client for good
nor takes the shared limits away, and no key of ours lives for ever.

The limiter borrows the gateway's Redis client (one client, one pool per gateway) when it is
given one; from a URL it opens and closes its own.

Redis never fails a request: every call is bounded by ``timeout``; when Redis is out of reach, slow
or broken, one warning is logged and the decision is taken by this process' own
:class:`~failover.server.limits.LocalLimiter` (the limit then holds per gateway rather than per
fleet). Every ``retry_seconds`` one request tries Redis again; when it answers, one info is
logged and the shared budgets are used again. No ``redis.`` exception leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from failover.server.limits import LocalLimiter, Rate

__all__ = ["GCRA_SCRIPT", "SharedLimiter"]

logger = logging.getLogger(__name__)

GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local stored = redis.pcall('GET', KEYS[1])
local tat = nil
if type(stored) == 'string' and #stored <= 32 and string.find(stored, '^[-+.%deE]+$') then
  tat = tonumber(stored)
end
-- nan fails every comparison: "not (a <= b)" also refuses it
if tat == nil or not (tat >= now and tat <= now + period + 0.001) then tat = now end
local new = tat + interval
local wait = new - period - now
if wait > 0.000001 then
  if redis.call('TTL', KEYS[1]) == -1 then
    redis.call('PEXPIRE', KEYS[1], math.ceil((tat - now) * 1000))
  end
  return math.ceil(wait * 1000)
end
redis.call('SET', KEYS[1], string.format('%.6f', new), 'PX', math.ceil((new - now) * 1000))
return 0
"""
"""KEYS: the budget; ARGV: interval and period in seconds. Returns 0 when allowed, else the
milliseconds to wait."""


class SharedLimiter:
    """GCRA budgets in Redis, with this process' :class:`LocalLimiter` as the fallback.

    ``now`` is the local clock (for the fallback and the retry schedule); ``timeout`` bounds each
    Redis call, all included; ``retry_seconds`` spaces the attempts to reach Redis again.

    >>> limiter = SharedLimiter("redis://127.0.0.1:6379/0", key_prefix="demo:", now=lambda: 0.0)
    >>> limiter
    <SharedLimiter prefix='demo:' shared>
    """

    def __init__(
        self,
        redis_at: str | redis.Redis,
        *,
        key_prefix: str,
        now: Callable[[], float],
        timeout: float = 0.1,
        retry_seconds: float = 1.0,
        local: LocalLimiter | None = None,
    ) -> None:
        self.key_prefix = key_prefix
        self.local = local if local is not None else LocalLimiter()
        self._now = now
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._owns_client = isinstance(redis_at, str)
        self._client = (
            redis.Redis.from_url(
                redis_at,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # one slow Redis costs one timeout, not several
                client_name="failover-limits",
                protocol=2,
            )
            if isinstance(redis_at, str)
            else redis_at
        )
        self._sha = hashlib.sha1(GCRA_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._degraded = False
        self._retry_at = 0.0
        self._trying = False

    @property
    def degraded(self) -> bool:
        """True while Redis is out of reach and this process decides alone."""
        return self._degraded

    async def check(self, client: str, path: str, rate: Rate) -> float | None:
        """None when the request may go on, else the seconds the client must wait."""
        if self._degraded and (self._trying or self._now() < self._retry_at):
            return self.local.check(f"{client}|{path}", rate, self._now())
        trying = self._trying = self._degraded
        try:
            wait_ms = await self._call(f"{self.key_prefix}limit:{path}:{client}", rate)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            # ValueError: an answer that is not our script's (a foreign value under our key).
            self._retry_at = self._now() + self._retry_seconds
            if not self._degraded:
                self._degraded = True
                logger.warning(
                    "shared rate limits unavailable (%s); each gateway limits on its own until "
                    "Redis answers again",
                    _describe(exc),
                )
            return self.local.check(f"{client}|{path}", rate, self._now())
        finally:
            if trying:
                self._trying = False
        if self._degraded:
            self._degraded = False
            logger.info("shared rate limits available again")
        return wait_ms / 1000 if wait_ms > 0 else None

    async def _call(self, key: str, rate: Rate) -> int:
        args = (repr(rate.interval), repr(float(rate.period)))
        async with asyncio.timeout(self._timeout):
            try:
                answer = await self._client.evalsha(self._sha, 1, key, *args)
            except NoScriptError:  # a new or restarted Redis: load the script once
                await self._client.script_load(GCRA_SCRIPT)
                answer = await self._client.evalsha(self._sha, 1, key, *args)
        return int(answer)

    async def aclose(self) -> None:
        """Close the connections it opened (a borrowed client is its owner's to close); errors
        on the way out are of no interest."""
        if not self._owns_client:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        mode = "degraded" if self._degraded else "shared"
        return f"<SharedLimiter prefix={self.key_prefix!r} {mode}>"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        return "no answer in time"
    # redis-py's messages name host and port and the server's error, never the password.
    return f"{type(exc).__name__}: {str(exc).strip()[:200] or 'no detail'}"
