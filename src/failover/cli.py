"""The ``failover`` command: parses arguments and hands over to the modules that do the work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="failover",
        description="An OpenAI-compatible LLM gateway that keeps answering when providers fail.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mock = commands.add_parser(
        "mock-upstream", help="run a fault-injecting OpenAI-compatible server for tests and demos"
    )
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8100)
    mock.add_argument("--profile", default="healthy", help="fault profile (see --list-profiles)")
    mock.add_argument("--seed", type=int, default=None, help="random seed for reproducible faults")
    mock.add_argument(
        "--name", default=None, help="named in every answer's content (default: the profile)"
    )
    mock.add_argument("--list-profiles", action="store_true", help="print the profiles and exit")

    commands.add_parser("demo", help="show failover at work on mock providers (no key, no network)")

    serve = commands.add_parser("serve", help="run the OpenAI-compatible HTTP gateway")
    serve.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="config file (default: ./failover.yaml if present, else the environment and .env)",
    )
    serve.add_argument("--host", default=None, help="listen address (default: server.host)")
    serve.add_argument("--port", type=int, default=None, help="port (default: server.port)")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes; above 1 needs state.backend: redis"
    )

    check = commands.add_parser(
        "check", help="probe every deployment, print a table; non-zero when a route is unreachable"
    )
    check.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="config file (default: ./failover.yaml if present, else the environment and .env)",
    )

    status = commands.add_parser("status", help="print the live status table of a running gateway")
    status.add_argument(
        "--url", default="http://127.0.0.1:4000", help="the gateway (default: %(default)s)"
    )
    status.add_argument("--key", default=None, help="the gateway's client key, when it has auth")

    stats = commands.add_parser(
        "stats", help="report from the request log per route and deployment over a time window"
    )
    stats.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="sqlite:///PATH or postgresql://... (default: store.url of the config)",
    )
    stats.add_argument(
        "--since", default="1h", help="the window: 30m, 1h, 7d, ... (default: %(default)s)"
    )
    stats.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="config file whose store.url to read (default: ./failover.yaml if present)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-upstream":
        from failover.mock_upstream import PROFILES
        from failover.mock_upstream.serve import run

        if args.list_profiles:
            for name, profile in PROFILES.items():
                print(f"{name:14} {profile.description}")
            return 0
        run(host=args.host, port=args.port, profile=args.profile, seed=args.seed, name=args.name)
        return 0
    if args.command == "demo":
        from failover import demo

        return demo.main()
    if args.command == "serve":
        from failover.server import serve_command

        return serve_command(args.config, host=args.host, port=args.port, workers=args.workers)
    if args.command == "check":
        from failover.check import check_command

        return check_command(args.config)
    if args.command == "status":
        from failover.check import status_command

        return status_command(args.url, key=args.key)
    if args.command == "stats":
        from failover.observe.stats import run_stats

        return run_stats(store=args.store, since=args.since, config=args.config)
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
