"""Provider health from the outside: the start-up check, ``failover check``, ``failover status``.

- :mod:`~failover.check.probe`: :func:`check_deployments` probes every deployment at once with
  a cheap real call and seeds health from what it finds; :func:`unreachable_routes`.
- :mod:`~failover.check.startup`: :func:`run_startup_check`, which the server runs and logs.
- :mod:`~failover.check.render`: rich tables and plain log lines.
- :mod:`~failover.check.status`: :func:`fetch_status` reads a running gateway's ``/v1/status``.
- :mod:`~failover.check.source`: :func:`resolve_config`, which config a command runs on.
- :mod:`~failover.check.command`: the two CLI commands, returning exit codes.

>>> rows = await check_deployments(gateway)  # doctest: +SKIP
>>> Console().print(check_table(rows))  # doctest: +SKIP
"""

from failover.check.command import check_command, status_command
from failover.check.probe import CheckRow, Reachability, check_deployments, unreachable_routes
from failover.check.render import check_lines, check_table, status_table
from failover.check.source import resolve_config
from failover.check.startup import run_startup_check
from failover.check.status import fetch_status, status_url

__all__ = [
    "CheckRow",
    "Reachability",
    "check_command",
    "check_deployments",
    "check_lines",
    "check_table",
    "fetch_status",
    "resolve_config",
    "run_startup_check",
    "status_command",
    "status_table",
    "status_url",
    "unreachable_routes",
]
