"""SPEC.md's ``000_*`` table, row by row, on virtual time.

Route ``[main, fallback]``, ``hedge_after: 1.5``, ``deadline: 5.5``, ``finish_losers: 4``,
``default_response: INTENT_FALLBACK``, both deployments ``max_retries: 0``; t is seconds from
arrival. Each test checks the answer and when it came, every attempt (start, end, outcome),
what the upstream saw, the losers left running and the events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from failover.errors import AllTargetsFailed, ErrorClass
from failover.health.base import Plan

from .fakes import (
    DEFAULT,
    FakeProvider,
    Played,
    StateHealth,
    Step,
    fail,
    hang,
    ok,
    play,
    route,
)

SERVER_ERROR = ErrorClass.SERVER_ERROR.value
ROUTE_000: dict[str, Any] = {
    "hedge_after": 1.5,
    "deadline": 5.5,
    "finish_losers": 4.0,
    "default_response": DEFAULT,
}


def table(main: Sequence[Step], fallback: Sequence[Step] | None = None, **kw: Any) -> Played:
    """Play the route of the table over main (and fallback when given)."""
    providers = [FakeProvider("main", main)]
    if fallback is not None:
        providers.append(FakeProvider("fallback", fallback))
    return play(providers, route([p.name for p in providers], **ROUTE_000), **kw)


def answered(played: Played) -> tuple[str | None, str, float]:
    assert played.result is not None, played.error
    return played.result.deployment, played.result.text, round(played.answered_at, 6)


def clean(played: Played) -> None:
    assert played.only_losers_left
    assert played.left_after_close == 0


def test_2_1_main_answers_fast() -> None:
    """2.1: main answers at 0.2; nothing else starts."""
    played = table([ok(0.2)], [ok(0.3)])
    assert answered(played) == ("main", "from main", 0.2)
    assert played.final == [("main", 0.0, 0.2, "success")]
    assert played.observer.kinds() == []
    assert played.health.reported("main") == ["success"]
    clean(played)


def test_2_2_and_6_1_main_wins_after_the_hedge_started() -> None:
    """2.2 + 6.1: main answers at 2.0; the fallback started at 1.5 is cancelled at 2.0."""
    played = table([ok(2.0)], [ok(3.0)])
    assert answered(played) == ("main", "from main", 2.0)
    assert played.final == [
        ("main", 0.0, 2.0, "success"),
        ("fallback", 1.5, 2.0, "cancelled"),
    ]
    assert played.observer.timeline() == [
        ("primary_timeout", 1.5, "main"),
        ("hedge_started", 1.5, "fallback"),
    ]
    assert played.health.reported("fallback") == ["cancelled"]
    assert played.background_at_answer == 0
    clean(played)


def test_6_2_fallback_wins_and_main_finishes_in_the_background() -> None:
    """6.2: the fallback answers at 1.8; main runs on and is lost_completed at 3.0."""
    played = table([ok(3.0)], [ok(0.3)])
    assert answered(played) == ("fallback", "from fallback", 1.8)
    assert played.at_answer == [
        ("main", 0.0, None, "running"),
        ("fallback", 1.5, 1.8, "success"),
    ]
    assert played.background_at_answer == 1
    assert played.final == [
        ("main", 0.0, 3.0, "lost_completed"),
        ("fallback", 1.5, 1.8, "success"),
    ]
    assert played.observer.kinds() == ["primary_timeout"]
    # A loser's upstream outcome still feeds health (rule 7).
    assert played.health.reported("main") == ["success"]
    clean(played)


def test_2_3_main_fails_at_once_and_the_fallback_starts_at_once() -> None:
    """2.3: main fails (500) at 0.0; the fallback starts at 0.0 and answers at 0.3."""
    played = table([fail(0.0)], [ok(0.3)])
    assert answered(played) == ("fallback", "from fallback", 0.3)
    assert played.final == [
        ("main", 0.0, 0.0, SERVER_ERROR),
        ("fallback", 0.0, 0.3, "success"),
    ]
    assert played.observer.kinds() == []
    assert played.health.reported("main") == [SERVER_ERROR]
    clean(played)


def test_3_2_single_target_answers_late() -> None:
    """3.2: a single target answering at 3.0 is waited for; primary_timeout at 1.5."""
    played = table([ok(3.0)])
    assert answered(played) == ("main", "from main", 3.0)
    assert played.final == [("main", 0.0, 3.0, "success")]
    assert played.observer.timeline() == [("primary_timeout", 1.5, "main")]
    clean(played)


def test_3_2_single_target_never_answers() -> None:
    """3.2: a single target that never answers is cancelled at the deadline; default at 5.5."""
    played = table([hang()])
    assert answered(played) == (None, DEFAULT, 5.5)
    assert played.result is not None
    assert played.result.degraded
    assert played.final == [("main", 0.0, 5.5, "cancelled")]
    assert played.observer.timeline() == [
        ("primary_timeout", 1.5, "main"),
        ("all_failed", 5.5, None),
        ("default_served", 5.5, None),
    ]
    assert played.health.reported("main") == ["cancelled"]
    clean(played)


def test_4_1_both_never_answer() -> None:
    """4.1: both hang; both cancelled at 5.5; the default at 5.5."""
    played = table([hang()], [hang()])
    assert answered(played) == (None, DEFAULT, 5.5)
    assert played.final == [
        ("main", 0.0, 5.5, "cancelled"),
        ("fallback", 1.5, 5.5, "cancelled"),
    ]
    assert played.observer.kinds() == ["primary_timeout", "all_failed", "default_served"]
    assert played.health.reported("main") == ["cancelled"]
    assert played.health.reported("fallback") == ["cancelled"]
    clean(played)


def test_7_1_fallback_fails_and_main_answers() -> None:
    """7.1: the fallback fails at 1.5; main answers at 2.5."""
    played = table([ok(2.5)], [fail(0.0)])
    assert answered(played) == ("main", "from main", 2.5)
    assert played.final == [
        ("main", 0.0, 2.5, "success"),
        ("fallback", 1.5, 1.5, SERVER_ERROR),
    ]
    assert played.observer.kinds() == ["primary_timeout"]
    clean(played)


def test_7_2_main_fails_and_the_fallback_answers() -> None:
    """7.2: main fails at 2.0; the fallback (started 1.5) answers at 2.5."""
    played = table([fail(2.0)], [ok(1.0)])
    assert answered(played) == ("fallback", "from fallback", 2.5)
    assert played.final == [
        ("main", 0.0, 2.0, SERVER_ERROR),
        ("fallback", 1.5, 2.5, "success"),
    ]
    assert played.observer.kinds() == ["primary_timeout"]
    clean(played)


def test_7_3_both_fail_at_once() -> None:
    """7.3: both fail at once: the default at 0.0, no waiting for the deadline."""
    played = table([fail(0.0)], [fail(0.0)])
    assert answered(played) == (None, DEFAULT, 0.0)
    assert played.final == [
        ("main", 0.0, 0.0, SERVER_ERROR),
        ("fallback", 0.0, 0.0, SERVER_ERROR),
    ]
    assert played.observer.kinds() == ["all_failed", "default_served"]
    all_failed = played.observer.events[-2].error
    assert isinstance(all_failed, AllTargetsFailed)
    assert [getattr(e, "error_class", None) for e in all_failed.errors] == [
        ErrorClass.SERVER_ERROR
    ] * 2
    clean(played)


def test_8_1_the_caller_cancels() -> None:
    """8.1: the caller cancels at 1.0: CancelledError propagates, every attempt cancelled."""
    played = table([ok(3.0)], [ok(0.3)], cancel_at=1.0)
    assert isinstance(played.error, asyncio.CancelledError)
    assert played.answered_at == pytest.approx(1.0)
    assert played.final == [("main", 0.0, 1.0, "cancelled")]
    assert played.observer.kinds() == []
    assert played.health.reported("main") == ["cancelled"]
    clean(played)


def test_8_1_the_caller_cancels_while_both_run() -> None:
    """8.1 with both running: both cancelled at the cancellation, no default made up."""
    played = table([ok(3.0)], [ok(3.0)], cancel_at=2.0)
    assert isinstance(played.error, asyncio.CancelledError)
    assert played.final == [
        ("main", 0.0, 2.0, "cancelled"),
        ("fallback", 1.5, 2.0, "cancelled"),
    ]
    clean(played)


class _BrokenHealth(StateHealth):
    async def plan(self, targets: Sequence[str], *, early_probe: bool = True) -> Plan:
        raise RuntimeError("a bug inside failover")


def test_8_2_a_bug_inside_failover_gives_the_default(caplog: pytest.LogCaptureFixture) -> None:
    """8.2: an unexpected exception: the default, logged with its traceback, all_failed."""
    with caplog.at_level(logging.ERROR, logger="failover.engine"):
        played = table([ok(0.2)], [ok(0.3)], health=_BrokenHealth())
    assert answered(played) == (None, DEFAULT, 0.0)
    assert played.final == []
    assert played.observer.kinds() == ["all_failed", "default_served"]
    assert isinstance(played.observer.events[0].error, RuntimeError)
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert "unexpected error inside failover" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[0] is RuntimeError
    clean(played)
