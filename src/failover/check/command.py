"""``failover check`` and ``failover status``: what the CLI runs, returning the exit code.

Exit codes: 0 all well; 1 a route has no reachable deployment (check) or the gateway's status
could not be read (status); 2 the config is invalid (check).
"""

from __future__ import annotations

import asyncio
import os
import sys

from rich.console import Console
from rich.text import Text

from failover.check.probe import (
    DEFAULT_CHECK_TIMEOUT,
    CheckRow,
    check_deployments,
    unreachable_routes,
)
from failover.check.render import check_table, route_lines, status_table
from failover.check.source import resolve_config
from failover.check.status import DEFAULT_GATEWAY_URL, StatusUnavailable, fetch_status
from failover.clock import LoopClock
from failover.config import Config
from failover.errors import ConfigError
from failover.gateway import Gateway
from failover.health.memory import MemoryHealth

__all__ = ["check_command", "status_command"]

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_CONFIG = 2


def check_command(
    config: str | os.PathLike[str] | None = None,
    *,
    probe_timeout: float = DEFAULT_CHECK_TIMEOUT,
    console: Console | None = None,
) -> int:
    """Probe every deployment of the resolved config, print the table; the exit code.

    Non-zero when some route has no reachable deployment (those routes are printed) or when the
    config is invalid (its problems go to stderr).
    """
    try:
        resolved = resolve_config(config)
        rows = asyncio.run(_check(resolved, probe_timeout))
    except ConfigError as exc:
        print(f"failover check: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    out = console if console is not None else Console()
    out.print(check_table(rows))
    unreachable = unreachable_routes(resolved, rows)
    for line in route_lines(unreachable):
        out.print(Text(line, style="bold red"))
    if unreachable:
        return EXIT_UNREACHABLE
    routes = len(resolved.routes) or len(resolved.deployments)
    out.print(Text(f"every route ({routes}) has a reachable deployment", style="green"))
    return EXIT_OK


def status_command(
    url: str = DEFAULT_GATEWAY_URL, *, key: str | None = None, console: Console | None = None
) -> int:
    """Print the live status table of the gateway at ``url``; the exit code (1: unreadable)."""
    try:
        rows = asyncio.run(fetch_status(url, key=key))
    except StatusUnavailable as exc:
        print(f"failover status: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    out = console if console is not None else Console()
    out.print(status_table(rows))
    if not rows:
        out.print("the gateway reports no deployment")
    return EXIT_OK


async def _check(config: Config, probe_timeout: float) -> list[CheckRow]:
    # Health in memory, never fed: `check` reports what it sees, and must not touch the shared
    # state (Redis) of gateways that are running.
    health = MemoryHealth(config.health, config.deployments, LoopClock())
    async with Gateway(config, health=health) as gateway:
        return await check_deployments(gateway, probe_timeout=probe_timeout, seed_health=False)
