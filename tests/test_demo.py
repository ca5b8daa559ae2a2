"""`failover demo` end to end, small: mocks, the real HTTP gateway, and its summary."""

from __future__ import annotations

import io

from rich.console import Console

from failover.demo import PRIMARY, run_demo


async def test_demo_shows_failover_beating_the_primary_alone() -> None:
    """Through the gateway more requests are answered than by the primary alone (its outage)."""
    out = io.StringIO()
    through, alone = await run_demo(
        requests=80, concurrency=8, store="none", console=Console(file=out, width=120)
    )
    assert through.done == alone.done == 80
    assert through.failed == 0  # the route has a default answer
    assert alone.failed >= 80 * 0.2  # the outage alone fails a fifth of the run
    assert through.success_rate > alone.success_rate
    assert through.fallbacks > 0
    assert alone.answered_by.keys() == {PRIMARY}
    screen = out.getvalue()
    assert "through failover" in screen
    assert "primary" in screen
