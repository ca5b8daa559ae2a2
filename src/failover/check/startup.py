"""The start-up check the server runs when ``health.check_on_startup`` is true."""

from __future__ import annotations

import logging

from failover.check.probe import DEFAULT_CHECK_TIMEOUT, CheckRow, check_deployments
from failover.check.probe import unreachable_routes as _unreachable_routes
from failover.check.render import check_lines, route_lines
from failover.gateway import Gateway

__all__ = ["run_startup_check"]

logger = logging.getLogger("failover.check")


async def run_startup_check(
    gateway: Gateway,
    log: logging.Logger | None = None,
    *,
    probe_timeout: float = DEFAULT_CHECK_TIMEOUT,
) -> list[CheckRow]:
    """Probe every deployment, seed health from the outcomes, and log the table as lines.

    One line per deployment (INFO when reachable, WARNING otherwise), then one WARNING per route
    left without a reachable deployment. Never raises (cancellation aside): a provider that is
    down, or a bug here, must not keep the gateway from starting; it then returns what it has,
    possibly nothing.

    >>> if gateway.config.health.check_on_startup:  # doctest: +SKIP
    ...     await run_startup_check(gateway, logging.getLogger("failover.server"))
    """
    log = log if log is not None else logger
    try:
        rows = await check_deployments(gateway, probe_timeout=probe_timeout)
        reachable = sum(row.ok for row in rows)
        log.info("start-up check: %d of %d deployments reachable", reachable, len(rows))
        for row, line in zip(rows, check_lines(rows), strict=True):
            log.log(logging.INFO if row.ok else logging.WARNING, "%s", line)
        for line in route_lines(_unreachable_routes(gateway.config, rows)):
            log.warning("%s", line)
    except Exception:
        log.exception("start-up check failed; the gateway starts without it")
        return []
    return rows
