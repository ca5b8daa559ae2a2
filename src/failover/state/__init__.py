"""Shared state backends: what several gateways must agree on lives here.

- :mod:`failover.state.redis_health`: :class:`RedisHealth`, provider health shared through Redis
  (the ``redis`` backend of ``state:``; the ``memory`` one is
  :class:`failover.health.memory.MemoryHealth`).
- :mod:`failover.state.redis_store`: :class:`RedisHealthStore`, the Redis edge (scripts, timeouts,
  errors translated into :class:`StateUnavailable`).
- :mod:`failover.state.lua`: the Lua scripts, :mod:`failover.health.machine` run inside Redis.
"""

from failover.state.redis_health import RedisHealth
from failover.state.redis_store import RedisHealthStore

__all__ = [
    "RedisHealth",
    "RedisHealthStore",
]
