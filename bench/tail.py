"""Does hedging cut the tail? Latency of four policies against one fixed slow-tailed profile.

    .venv/bin/python bench/tail.py [--requests 10000] [--concurrency 20] [--plot PATH]
    .venv/bin/python bench/tail.py --smoke      # a few seconds, time scaled down: does it work?

The profile is fixed so that runs compare: the primary answers 97% of requests after a lognormal
delay (median 200 ms, sigma 0.5) and 3% after uniform(4 s, 8 s); the secondary after a lognormal
delay (median 300 ms, sigma 0.5). Both are in-process ``MockUpstream`` servers on 127.0.0.1
(seeded dice) behind the real :class:`failover.Gateway` library (not the HTTP server: this
measures the policy, ``bench/overhead.py`` measures the server), on uvloop. Each policy gets a
fresh gateway (so ``auto`` starts cold) and sends ``--requests`` requests, ``--concurrency`` at a
time, over a route ``[primary, secondary]`` with ``max_retries: 0``:

- ``no hedge``: sequential, the primary's timeout 30 s;
- ``sequential, 1 s timeout``: the primary's timeout is 1 s, then the secondary;
- ``hedge_after 0.5 s``: the secondary starts beside a primary that has not answered in 0.5 s;
- ``hedge_after auto``: ... once the primary passes its recent p95 (default bounds [0.2, 10]).

Reported: p50, p99, p99.9 and max, and the extra upstream requests (upstream calls beyond one
per request, hedges and fallbacks, as a share of requests). A PNG of the latency CDFs (and of
the tail, 1 - CDF on a log scale) is drawn when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import Outcome, deployment, drive, gateway_config, ms, table, use_uvloop
from failover import Gateway
from failover.mock_upstream import MockUpstream

PRIMARY = "lognormal:0.2,0.5;outliers:0.03,4,8"
SECONDARY = "lognormal:0.3,0.5"
DEFAULT_PLOT = Path(__file__).parent / "results" / "tail.png"


@dataclass(frozen=True)
class Policy:
    """One way to run the route; ``route`` and ``primary`` are config fragments."""

    label: str
    route: Mapping[str, Any]
    primary: Mapping[str, Any]


def policies(scale: float) -> list[Policy]:
    """The four policies, their seconds multiplied by ``scale`` (1 for the real run)."""
    return [
        Policy("no hedge", {}, {"timeout": 30 * scale}),
        Policy(f"sequential, {1.0 * scale:g} s timeout", {}, {"timeout": 1.0 * scale}),
        Policy(
            f"hedge_after {0.5 * scale:g} s", {"hedge_after": 0.5 * scale}, {"timeout": 30 * scale}
        ),
        Policy(
            "hedge_after auto",
            {"hedge_after": "auto", "hedge_bounds": [0.2 * scale, 10 * scale]},
            {"timeout": 30 * scale},
        ),
    ]


def scaled(spec: str, scale: float) -> str:
    """A latency spec with its seconds (not its sigma or rate) multiplied by ``scale``."""
    if scale == 1:
        return spec
    main, _, outliers = spec.partition(";")
    kind, _, numbers = main.partition(":")
    median, sigma = (float(x) for x in numbers.split(","))
    text = f"{kind}:{median * scale:g},{sigma:g}"
    if outliers:
        rate, low, high = (float(x) for x in outliers.partition(":")[2].split(","))
        text += f";outliers:{rate:g},{low * scale:g},{high * scale:g}"
    return text


async def run_policy(
    policy: Policy,
    primary: MockUpstream,
    secondary: MockUpstream,
    *,
    requests: int,
    concurrency: int,
    seed: int,
) -> Outcome:
    """One policy on a fresh gateway, the mocks reseeded so every policy sees the same dice."""
    primary.set_profile(seed=seed)
    secondary.set_profile(seed=seed + 1)
    config = gateway_config(
        {
            "primary": deployment(primary.url, max_retries=0, **policy.primary),
            "secondary": deployment(secondary.url, max_retries=0, timeout=30),
        },
        {"tail": {"targets": ["primary", "secondary"], **policy.route}},
    )
    async with Gateway.from_dict(config) as gateway:
        return await drive(gateway, "tail", requests, concurrency, label=policy.label)


def report(outcomes: list[Outcome]) -> str:
    """The Markdown table of the run."""
    base = outcomes[0].quantile(0.99)
    rows = [
        [
            o.label,
            f"{o.count:,}",
            f"{o.success_rate:.2%}",
            ms(o.quantile(0.5)),
            ms(o.quantile(0.99)),
            ms(o.quantile(0.999)),
            ms(o.quantile(1.0)),
            f"{base / o.quantile(0.99):.1f}x",
            f"{o.extra_upstream:.1%}",
        ]
        for o in outcomes
    ]
    headers = ["policy", "requests", "success", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]
    return table([*headers, "p99 cut", "extra upstream"], rows)


def plot(outcomes: list[Outcome], path: Path, title: str) -> str:
    """Draw the CDFs to ``path``; what happened, as one line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (.venv/bin/pip install matplotlib)"
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for outcome in outcomes:
        values = outcome.latencies()
        n = len(values)
        fractions = [(i + 1) / n for i in range(n)]
        left.step(values, fractions, where="post", label=outcome.label)
        right.step(values, [1 - f + 1 / n for f in fractions], where="post", label=outcome.label)
    left.set(xscale="log", xlabel="latency (s)", ylabel="share of requests answered", title="CDF")
    right.set(
        xscale="log",
        yscale="log",
        xlabel="latency (s)",
        ylabel="share of requests slower (1 - CDF)",
        title="the tail",
    )
    for axes in (left, right):
        axes.grid(True, which="both", alpha=0.3)
    left.legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"plot: {path}"


async def main_async(args: argparse.Namespace) -> int:
    scale = 0.1 if args.smoke else 1.0
    requests = 300 if args.smoke else args.requests
    async with (
        MockUpstream(name="primary", seed=1) as primary,
        MockUpstream(name="secondary", seed=2) as secondary,
    ):
        primary.set_profile(latency=scaled(PRIMARY, scale))
        secondary.set_profile(latency=scaled(SECONDARY, scale))
        print(
            f"primary {primary.profile.latency}, secondary {secondary.profile.latency}; "
            f"{requests:,} requests per policy, {args.concurrency} concurrent",
            flush=True,
        )
        outcomes: list[Outcome] = []
        for policy in policies(scale):
            outcome = await run_policy(
                policy,
                primary,
                secondary,
                requests=requests,
                concurrency=args.concurrency,
                seed=args.seed,
            )
            print(f"  {policy.label}: {outcome.seconds:.1f}s", flush=True)
            outcomes.append(outcome)
    print()
    print(report(outcomes))
    if args.json is not None:
        figures = {
            o.label: {
                "requests": o.count,
                "success_rate": o.success_rate,
                "p50": o.quantile(0.5),
                "p99": o.quantile(0.99),
                "p999": o.quantile(0.999),
                "max": o.quantile(1.0),
                "extra_upstream": o.extra_upstream,
            }
            for o in outcomes
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.smoke and args.plot is not None:
        title = f"{requests:,} requests per policy, {args.concurrency} concurrent"
        print(plot(outcomes, args.plot, title))
    if args.smoke:
        return smoke_check(outcomes)
    return 0


def smoke_check(outcomes: list[Outcome]) -> int:
    """It works: every request answered by a deployment, and the hedging policies hedged."""
    problems = [f"{o.label}: success {o.success_rate:.2%}" for o in outcomes if o.success_rate < 1]
    problems += [
        f"{o.label}: no extra upstream request" for o in outcomes[2:] if o.extra_upstream <= 0
    ]
    for problem in problems:
        print(f"SMOKE FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG of the CDFs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, time scaled 1/10")
    args = parser.parse_args()
    use_uvloop()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
