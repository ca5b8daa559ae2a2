"""Does failover keep answering when providers fail? Success rate and latency, with and without it.

    .venv/bin/python bench/availability.py [--requests 20000] [--window 30] [--rate 250]
    .venv/bin/python bench/availability.py --smoke      # a few seconds, scaled down

Three in-process ``MockUpstream`` providers (a, b, c) on 127.0.0.1 answer after a lognormal delay
(median 50 ms, sigma 0.3), behind the real :class:`failover.Gateway` library on uvloop. Requests
arrive at a steady ``--rate`` per second (an open loop: a request that fails fast does not bring
the next one sooner, so every window gets its share). Two ways to call them:

- ``primary alone``: a route of ``a`` only, the default policy (sequential, ``max_retries: 1``);
- ``failover``: a route ``[a, b, c]`` with ``hedge_after: auto`` and the defaults otherwise
  (``max_retries: 1``, circuit breakers and cooldowns, retry budget 20%). A hedged route starts
  the next target at once when an attempt fails, and retries only after every target started.

Scenarios:

1. ``healthy``: no fault; its p99 is the reference for the others.
2. ``independent``: each provider fails 5% of requests (500 or 503), independently;
   ``--requests`` requests (``healthy`` too).
3. ``correlated``: four windows of ``--window`` seconds. Window 1: ``a`` is down (503 to every
   request) while ``b`` answers a 429 storm (90% of requests, Retry-After 2 s); window 2: ``a``
   is back, ``b``'s storm goes on; window 3: ``a`` is down again and ``b`` storms; window 4:
   all healthy. ``c`` never fails. Faults change during the run through
   ``MockUpstream.set_profile``.

Both routes have a default response, so that every request returns its attempts; success is an
answer from a provider (not the default). Reported per run: success, p50, p99, p99.9, and the extra
upstream requests (calls beyond the first of each request, as a share of requests).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _common import Outcome, deployment, gateway_config, ms, paced, table, use_uvloop
from failover import Gateway
from failover.mock_upstream import MockUpstream

NAMES = ("a", "b", "c")
LATENCY = "lognormal:0.05,0.3"


@dataclass(frozen=True)
class Scale:
    """Latencies, windows and Retry-After are multiplied by ``time`` (1 for the real run)."""

    time: float
    requests: int
    window: float


def state(name: str, scale: Scale) -> dict[str, Any]:
    """The profile changes that put a mock in ``name``: ok, flaky, down or storm."""
    latency = LATENCY if scale.time == 1 else f"lognormal:{0.05 * scale.time:g},0.3"
    changes: dict[str, Any] = {"latency": latency}
    if name == "flaky":
        changes.update(error_rate=0.05, error_status="500,503")
    elif name == "down":
        changes.update(error_rate=1.0, error_status="503")
    elif name == "storm":
        changes.update(rate_limit_share=0.9, retry_after=2.0 * scale.time, retry_after_form="all")
    elif name != "ok":
        raise ValueError(f"unknown state {name!r}")
    return changes


def apply(mocks: dict[str, MockUpstream], states: dict[str, str], scale: Scale) -> None:
    """Put each mock in its state (from the healthy profile, so nothing lingers)."""
    for name, mock in mocks.items():
        mock.set_profile("healthy", **state(states.get(name, "ok"), scale))


# The correlated scenario, window by window: a down, b storming, then both, then healthy.
CORRELATED = (
    {"a": "down", "b": "storm"},
    {"b": "storm"},
    {"a": "down", "b": "storm"},
    {},
)


def config(
    mocks: dict[str, MockUpstream], targets: tuple[str, ...], **route: Any
) -> dict[str, Any]:
    """A quiet gateway over ``mocks`` with one route ``chat`` over ``targets``."""
    return gateway_config(
        {name: deployment(mock.url) for name, mock in mocks.items()},
        {"chat": {"targets": list(targets), "default_response": "DEFAULT", **route}},
    )


POLICIES: dict[str, dict[str, Any]] = {
    "primary alone": {"targets": ("a",)},
    "failover": {"targets": NAMES, "hedge_after": "auto"},
}


async def run(
    mocks: dict[str, MockUpstream],
    policy: str,
    label: str,
    *,
    requests: int | None,
    seconds: float | None,
    rate: float,
    schedule: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """One policy on a fresh gateway (fresh health), while ``schedule`` changes the faults."""
    options = dict(POLICIES[policy])
    targets = options.pop("targets")
    async with Gateway.from_dict(config(mocks, targets, **options)) as gateway:
        driving = paced(
            gateway, "chat", rate, label=f"{label}: {policy}", count=requests, seconds=seconds
        )
        if schedule is None:
            return await driving
        outcome, _ = await asyncio.gather(driving, schedule())
        return outcome


def correlated_schedule(
    mocks: dict[str, MockUpstream], scale: Scale
) -> Callable[[], Awaitable[None]]:
    """Switch the mocks through :data:`CORRELATED`, one window each."""

    async def schedule() -> None:
        for states in CORRELATED:
            apply(mocks, states, scale)
            await asyncio.sleep(scale.window)
        apply(mocks, {}, scale)

    return schedule


def report(outcomes: list[Outcome], healthy_p99: float) -> str:
    rows = [
        [
            o.label,
            f"{o.count:,}",
            f"{o.success_rate:.3%}",
            f"{o.count - round(o.success_rate * o.count):,}",
            ms(o.quantile(0.5)),
            ms(o.quantile(0.99)),
            f"{o.quantile(0.99) / healthy_p99:.2f}x",
            ms(o.quantile(0.999)),
            f"{o.extra_upstream:.1%}",
        ]
        for o in outcomes
    ]
    headers = ["run", "requests", "success", "failed", "p50 ms", "p99 ms", "p99 / healthy"]
    return table([*headers, "p99.9 ms", "extra upstream"], rows)


async def main_async(args: argparse.Namespace) -> int:
    scale = (
        Scale(time=0.1, requests=500, window=0.3)
        if args.smoke
        else Scale(time=1.0, requests=args.requests, window=args.window)
    )
    mocks = {name: MockUpstream(name=name, seed=args.seed + i) for i, name in enumerate(NAMES)}
    for mock in mocks.values():
        await mock.start()
    try:
        outcomes: list[Outcome] = []

        async def one(
            policy: str,
            label: str,
            states: dict[str, str],
            schedule: Callable[[], Awaitable[None]] | None = None,
        ) -> Outcome:
            apply(mocks, states, scale)
            for i, mock in enumerate(mocks.values()):
                mock.set_profile(seed=args.seed + i)
            seconds = None if schedule is None else scale.window * len(CORRELATED)
            requests = scale.requests if schedule is None else None
            outcome = await run(
                mocks,
                policy,
                label,
                requests=requests,
                seconds=seconds,
                rate=args.rate,
                schedule=schedule,
            )
            print(f"  {outcome.label}: {outcome.count:,} requests in {outcome.seconds:.1f}s")
            outcomes.append(outcome)
            return outcome

        healthy = await one("failover", "healthy", {})
        flaky = {name: "flaky" for name in NAMES}
        await one("primary alone", "independent 5%", flaky)
        await one("failover", "independent 5%", flaky)
        for policy in POLICIES:
            await one(policy, "correlated", {}, correlated_schedule(mocks, scale))
    finally:
        for mock in mocks.values():
            await mock.aclose()
    healthy_p99 = healthy.quantile(0.99)
    print()
    print(report(outcomes, healthy_p99))
    if args.smoke:
        return smoke_check(outcomes)
    return 0


def smoke_check(outcomes: list[Outcome]) -> int:
    """It works: every run ran, and failover answered far more than the primary alone."""
    by_label = {o.label: o for o in outcomes}
    problems = []
    alone = by_label["correlated: primary alone"]
    failover = by_label["correlated: failover"]
    # Half the correlated run has the primary down: alone loses far more than a few requests.
    if not failover.success_rate > alone.success_rate + 0.1:
        problems.append(
            f"correlated: failover {failover.success_rate:.2%}, alone {alone.success_rate:.2%}"
        )
    if by_label["healthy: failover"].success_rate < 1:
        problems.append("healthy: not every request succeeded")
    for problem in problems:
        print(f"SMOKE FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per independent run")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--rate", type=float, default=250.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, scaled down")
    args = parser.parse_args()
    if args.smoke:
        args.rate = 600.0
    use_uvloop()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
