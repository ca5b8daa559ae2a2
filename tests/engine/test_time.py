"""The engine's time is its event loop's: no clock to pass, virtual time injected by the loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from failover.clock import ManualClock, VirtualTimeLoop, run_virtual
from failover.engine import Engine

from .fakes import REQUEST, FakeProvider, RecordingHealth, engine_for, hang, ok, records, route


def test_the_engine_takes_no_clock() -> None:
    """A clock is refused: a ManualClock made loop timers and the engine's time disagree."""
    a = FakeProvider("a", [ok(0.01)])
    with pytest.raises(TypeError, match="clock"):
        Engine({"a": a}, {"a": a.deployment}, RecordingHealth(), clock=ManualClock())  # type: ignore[call-arg]


def test_a_provider_answering_in_10_ms_answers_on_the_virtual_loop() -> None:
    """On a VirtualTimeLoop a provider that sleeps 10 ms answers, recorded at exactly 0.01 s."""
    a = FakeProvider("a", [ok(0.01)])

    async def scenario() -> tuple[Any, float]:
        engine = engine_for([a])
        result = await engine.chat(route(["a"]), REQUEST, request_id="r")
        await engine.aclose()
        return result, asyncio.get_running_loop().time()

    result, answered_at = run_virtual(scenario(), start=1000.0)
    assert result.deployment == "a"
    assert not result.degraded
    assert records(result.attempts) == [("a", 0.0, 0.01, "success")]
    assert answered_at == 1000.01


def test_a_hedge_due_at_1_5_virtual_seconds_starts_at_exactly_1_5() -> None:
    """hedge_after 1.5: the hedge starts when the loop's time is exactly 1.5 s past arrival."""
    slow, fast = FakeProvider("slow", [ok(5.0)]), FakeProvider("fast", [ok(0.25)])

    async def scenario() -> Any:
        engine = engine_for([slow, fast])
        result = await engine.chat(
            route(["slow", "fast"], hedge_after=1.5), REQUEST, request_id="r"
        )
        await engine.aclose()
        return result

    loop = VirtualTimeLoop()
    try:
        result = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert fast.calls[0].start == 1.5
    assert records(result.attempts) == [
        ("slow", 0.0, 1.75, "cancelled"),
        ("fast", 1.5, 1.75, "success"),
    ]
    assert result.attempts[1].hedge


def test_the_deployment_timeout_is_a_loop_timer() -> None:
    """A hung call ends at exactly its deployment's timeout of loop time, as a timeout."""
    stuck, other = FakeProvider("stuck", [hang()], timeout=2.0), FakeProvider("other", [ok(0.5)])

    async def scenario() -> Any:
        engine = engine_for([stuck, other])
        return await engine.chat(route(["stuck", "other"]), REQUEST, request_id="r")

    result = run_virtual(scenario())
    assert records(result.attempts) == [
        ("stuck", 0.0, 2.0, "timeout"),
        ("other", 2.0, 2.5, "success"),
    ]
