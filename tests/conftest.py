"""Fixtures shared by the whole suite: the machine's real Redis and PostgreSQL.

Tests that need a service get it through these fixtures. When the service is missing they skip
with a message saying how to start it, except in CI (``FAILOVER_REQUIRE_SERVICES=1``), where they
fail: a green CI must have run them. Each test gets its own Redis key prefix (or PostgreSQL
schema) and deletes only what it created.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432

_HOW_TO_START = {
    "redis": (
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
    ),
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) when the service is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} is not running on {host}:{port}; start it with: {_HOW_TO_START[name]}"
    if os.environ.get("FAILOVER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"FAILOVER_REQUIRE_SERVICES=1 and {message}")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis, as a URL (skips or fails when it is not running)."""
    require_service("redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis.asyncio as redis

    prefix = f"failover-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
