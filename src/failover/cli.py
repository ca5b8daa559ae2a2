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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-upstream":
        from failover import mock_upstream

        if args.list_profiles:
            for name, profile in mock_upstream.PROFILES.items():
                print(f"{name:14} {profile.description}")
            return 0
        mock_upstream.run(
            host=args.host, port=args.port, profile=args.profile, seed=args.seed, name=args.name
        )
        return 0
    if args.command == "demo":
        from failover import demo

        return demo.main()
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
