"""The resilience engine: one request's life over a route's targets.

::

    engine.py      Engine: chat / open_stream / aclose; the answer from the outcome
    route.py       RoutePlan, HedgePolicy: a route's targets, hedging and budget, computed once
    run.py         RequestRun: one request's state (loop time, records, errors, the win)
    attempt.py     admit, Attempt: one call to one deployment, timed out, recorded, reported
    sequential.py  rule 2: one attempt at a time, retries before moving on
    hedged.py      rule 3: targets race; hedges, fallbacks, retries after all have started
    losers.py      rule 4: cancel and await, or run on in the background (LoserPool)
    streaming.py   rule 8: failover until the commit; CommittedStream after it
    retrying.py    backoff with jitter, Retry-After, whether a failure is retried
    budget.py      RetryBudget: extra attempts capped at a ratio of first ones
    adaptive.py    HedgeDelays: hedge_after auto, the running attempt's deployment's p95
    events.py      Event, EventKind, Observer: what the observability layer is told
    default.py     the default response as a completion or as chunks

Imports point one way: engine -> hedged, sequential, streaming -> attempt -> run -> route,
adaptive, losers, events.

Time is the running event loop's: every timeout, hedge delay, backoff and deadline is a timer of
that loop (``loop.call_at``, ``asyncio.sleep``, ``asyncio.wait``) and every time read is
``loop.time()``. There is no clock parameter: tests inject time by running the engine on a
:class:`~failover.clock.VirtualTimeLoop` (:func:`~failover.clock.run_virtual`).
"""

from failover.engine.budget import RetryBudget
from failover.engine.engine import Engine
from failover.engine.events import Event, EventKind, NullObserver
from failover.engine.losers import LoserPool
from failover.engine.retrying import backoff_delay, retry_wait
from failover.engine.streaming import CommittedStream, commits

__all__ = [
    "CommittedStream",
    "Engine",
    "Event",
    "EventKind",
    "LoserPool",
    "NullObserver",
    "RetryBudget",
    "backoff_delay",
    "commits",
    "retry_wait",
]
