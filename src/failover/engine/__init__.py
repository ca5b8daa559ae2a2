"""The resilience engine: one request's life over a route's targets.

::

    engine.py      Engine: chat / open_stream / aclose; the answer from the outcome
    route.py       RoutePlan: a route's targets, hedge delay and retry budget, computed once
    run.py         RequestRun: one request's state (times, records, errors, the winner)
    attempt.py     Attempt: one call to one deployment, timed out, recorded, reported to health
    sequential.py  rule 2: one attempt at a time, retries before moving on
    hedged.py      rule 3: targets race; hedges, fallbacks, retries after all have started
    losers.py      rule 4: cancel and await, or run on in the background (LoserPool)
    streaming.py   rule 8: failover until the commit; CommittedStream after it
    retrying.py    backoff with jitter, Retry-After, whether a failure is retried
    budget.py      RetryBudget: extra attempts capped at a ratio of first ones
    adaptive.py    HedgeDelays: hedge_after auto, the running attempt's deployment's p95
    events.py      Event, EventKind, Observer: what the observability layer is told
    failure.py     failure_status: the HTTP status, code and Retry-After of an error
    default.py     the default response as a completion or as chunks
"""

from failover.engine.budget import RetryBudget
from failover.engine.engine import Engine
from failover.engine.events import Event, EventKind, NullObserver, Observer
from failover.engine.failure import FailureStatus, failure_status
from failover.engine.losers import LoserPool
from failover.engine.retrying import backoff_delay, retry_wait
from failover.engine.route import RoutePlan
from failover.engine.streaming import CommittedStream, commits

__all__ = [
    "CommittedStream",
    "Engine",
    "Event",
    "EventKind",
    "FailureStatus",
    "LoserPool",
    "NullObserver",
    "Observer",
    "RetryBudget",
    "RoutePlan",
    "backoff_delay",
    "commits",
    "failure_status",
    "retry_wait",
]
