"""``failover mock-upstream``: one mock served until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from failover.mock_upstream.profiles import PROFILES
from failover.mock_upstream.server import MockUpstream

__all__ = ["run"]


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8100,
    profile: str = "healthy",
    seed: int | None = None,
    name: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (blocking), on uvloop when it is installed."""
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(host, port, profile, seed, name))


async def _serve(host: str, port: int, profile: str, seed: int | None, name: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with MockUpstream(profile, name=name, seed=seed, host=host, port=port) as mock:
        print(f"mock-upstream {mock.name!r} profile={profile} listening on {mock.url}", flush=True)
        await stop.wait()
    print(f"mock-upstream {mock.name!r} stopped: {mock.stats!r}", flush=True)
