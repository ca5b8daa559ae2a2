"""Provider health: circuit breakers, cooldowns and availability as pure state machines.

- :mod:`failover.health.base`: the :class:`Health` protocol the engine consults.
- :mod:`failover.health.machine`: the per-deployment state machine on a flat record (pure).
- :mod:`failover.health.breaker`: :class:`CircuitBreaker`, one deployment's machine and stats.
- :mod:`failover.health.stats`: the bounded window of recent outcomes and latencies.
- :mod:`failover.health.memory`: :class:`MemoryHealth`, the in-process backend.
"""

from failover.health.base import Admission, DeploymentState, Plan, Report
from failover.health.memory import MemoryHealth

__all__ = [
    "Admission",
    "DeploymentState",
    "MemoryHealth",
    "Plan",
    "Report",
]
