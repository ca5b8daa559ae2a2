"""Probing every deployment with one cheap real call, for ``failover check`` and the start-up check.

:func:`check_deployments` calls each configured deployment's ``probe()`` (``GET {base}/models``)
concurrently, each bounded by its own ``timeout`` capped at :data:`DEFAULT_CHECK_TIMEOUT`, and
gives one :class:`CheckRow` per deployment. A deployment without a usable key is reported as not
configured and never called. The outcomes also seed the gateway's health as attempts' outcomes
would, so that a key the provider refuses opens that circuit before the first request pays for
finding out.

A probe is not a completion, so its outcomes say less than a chat call's: a success proves the
host and the key, not the model name; and a 404 means the server lists no models at that path
(some OpenAI-compatible servers have no ``/models``), not that the model is missing, so a 404 is
shown in the row but not fed to health (it would open the circuit of a working chat API).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from failover.clock import Clock, LoopClock
from failover.config import Config, DeploymentConfig
from failover.errors import ErrorClass, UpstreamError, UpstreamTimeout
from failover.gateway import Gateway
from failover.health.base import Admission, Health, Report
from failover.providers.base import ChatProvider
from failover.providers.redact import Redactor

__all__ = [
    "DEFAULT_CHECK_TIMEOUT",
    "CheckRow",
    "Reachability",
    "check_deployments",
    "unreachable_routes",
]

logger = logging.getLogger("failover.check")

DEFAULT_CHECK_TIMEOUT = 10.0
"""The longest one probe may take: a deployment's own ``timeout`` is capped at this."""

_MESSAGE_LIMIT = 160

# A 404 on the models list says the path is missing, not that the model is: see the docstring.
_NOT_FED_TO_HEALTH = frozenset({ErrorClass.NOT_FOUND})


class Reachability(enum.StrEnum):
    """What a probe found: ``yes``, ``no``, or ``not configured`` (never called)."""

    YES = "yes"
    NO = "no"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One deployment's probe: reachable or not, how fast, and why not.

    ``latency`` is the probe's duration in seconds (None when nothing was called);
    ``error_class`` and ``status`` come from the probe's :class:`~failover.errors.UpstreamError`;
    ``message`` is short and never holds a key.

    >>> CheckRow("mini", "openai", "gpt-4o-mini", Reachability.YES, latency=0.12).ok
    True
    """

    deployment: str
    provider: str
    model: str
    reachable: Reachability
    latency: float | None = None
    error_class: ErrorClass | None = None
    status: int | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the probe succeeded."""
        return self.reachable is Reachability.YES


async def check_deployments(
    gateway: Gateway,
    *,
    probe_timeout: float = DEFAULT_CHECK_TIMEOUT,
    seed_health: bool = True,
    clock: Clock | None = None,
) -> list[CheckRow]:
    """Probe every deployment of ``gateway`` at once; one row each, in config order.

    Each probe lasts at most the deployment's ``timeout`` or ``probe_timeout``, whichever is
    shorter (a timed-out probe is a row, not an exception).
    With ``seed_health`` each outcome is reported to ``gateway.health`` as an attempt's would be
    (an ``auth`` failure opens the circuit at once, a 429 starts a cooldown). Never raises for a
    deployment's failure, nor for a health backend that fails (logged).

    >>> rows = await check_deployments(gateway)  # doctest: +SKIP
    >>> [(row.deployment, row.reachable.value) for row in rows]  # doctest: +SKIP
    [('groq-llama', 'yes'), ('openai-mini', 'not configured')]
    """
    if probe_timeout <= 0:
        raise ValueError(f"probe_timeout must be positive, got {probe_timeout!r}")
    clock = clock if clock is not None else LoopClock()
    health = gateway.health if seed_health else None
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                _check_one(name, deployment, gateway.providers[name], health, clock, probe_timeout)
            )
            for name, deployment in gateway.config.deployments.items()
        ]
    return [task.result() for task in tasks]


def unreachable_routes(config: Config, rows: Sequence[CheckRow]) -> dict[str, list[CheckRow]]:
    """The routes none of whose targets was reachable, each with its targets' rows.

    A config without routes serves each deployment as its own route, so then every unreachable
    deployment is one.
    """
    by_name = {row.deployment: row for row in rows}
    routes: Mapping[str, Sequence[str]] = (
        {name: route.targets for name, route in config.routes.items()}
        if config.routes
        else {name: (name,) for name in config.deployments}
    )
    found: dict[str, list[CheckRow]] = {}
    for name, targets in routes.items():
        target_rows = [by_name[target] for target in targets if target in by_name]
        if not any(row.ok for row in target_rows):
            found[name] = target_rows
    return found


async def _check_one(
    name: str,
    deployment: DeploymentConfig,
    provider: ChatProvider,
    health: Health | None,
    clock: Clock,
    cap: float,
) -> CheckRow:
    if not deployment.configured:
        return _row(
            deployment,
            Reachability.NOT_CONFIGURED,
            message=deployment.not_configured_reason or "not configured",
        )
    limit = min(deployment.timeout, cap)
    admission = await _admit(health, name) if health is not None else None
    started = clock.now()
    try:
        error = await _probe(provider, name, limit)
    except Exception as exc:
        # A bug below us, not an upstream outcome: shown, and no health is changed by it.
        logger.exception("probe of deployment %r failed unexpectedly", name)
        await _report(health, admission, Report(latency=clock.now() - started, cancelled=True))
        return _row(deployment, Reachability.NO, message=f"probe failed: {type(exc).__name__}")
    except BaseException:
        await _report(health, admission, Report(latency=clock.now() - started, cancelled=True))
        raise
    latency = clock.now() - started
    await _report(health, admission, _health_report(error, latency))
    if error is None:
        return _row(deployment, Reachability.YES, latency=latency)
    redact = Redactor([deployment.api_key.get_secret_value()] if deployment.api_key else [])
    return _row(
        deployment,
        Reachability.NO,
        latency=latency,
        error_class=error.error_class,
        status=error.status,
        message=_short(redact(error.message)),
    )


async def _probe(provider: ChatProvider, name: str, limit: float) -> UpstreamError | None:
    """The probe's upstream failure, or None when it succeeded within ``limit`` seconds."""
    bound = asyncio.timeout(limit)
    try:
        async with bound:
            await provider.probe()
    except UpstreamError as error:
        return error
    except TimeoutError:
        if not bound.expired():  # not ours: let the caller treat it as a bug
            raise
        return UpstreamTimeout(f"no answer within {limit:g}s", deployment=name)
    return None


def _health_report(error: UpstreamError | None, latency: float) -> Report:
    if error is None:
        return Report(latency=latency)
    if error.error_class in _NOT_FED_TO_HEALTH:
        # Only the probe lease (if any) is released.
        return Report(latency=latency, cancelled=True)
    return Report(error_class=error.error_class, retry_after=error.retry_after, latency=latency)


async def _admit(health: Health, name: str) -> Admission | None:
    # No early probe: a deployment the shared state holds open stays so until its break ends.
    try:
        return await health.admit(name)
    except Exception:
        logger.exception("health admit for deployment %r failed; its probe is not recorded", name)
        return None


async def _report(health: Health | None, admission: Admission | None, report: Report) -> None:
    if health is None or admission is None:
        return
    try:
        await health.report(admission, report)
    except Exception:
        logger.exception("health report for deployment %r failed", admission.deployment)


def _row(
    deployment: DeploymentConfig,
    reachable: Reachability,
    *,
    latency: float | None = None,
    error_class: ErrorClass | None = None,
    status: int | None = None,
    message: str = "",
) -> CheckRow:
    return CheckRow(
        deployment=deployment.name,
        provider=deployment.provider.value,
        model=deployment.model,
        reachable=reachable,
        latency=latency,
        error_class=error_class,
        status=status,
        message=message,
    )


def _short(text: str) -> str:
    """One line, at most ``_MESSAGE_LIMIT`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"
