"""Engine: rule 1 (availability, probe), the answer's shapes, bugs, observers, route plans."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from failover.clock import run_virtual
from failover.config import DeploymentConfig, RouteConfig
from failover.engine import Engine, Event
from failover.errors import (
    AllTargetsFailed,
    ConfigError,
    ErrorClass,
    NoTargetAvailable,
    UpstreamError,
)
from failover.server.status import status_of
from failover.types import AttemptRecord, ChatRequest, Completion

from .fakes import (
    DEFAULT,
    REQUEST,
    FakeProvider,
    RecordingHealth,
    StateHealth,
    Step,
    chunk,
    engine_for,
    fail,
    hang,
    ok,
    play,
    records,
    route,
)


def test_unavailable_targets_are_skipped() -> None:
    """Rule 1: a deployment health calls unavailable is not tried; the next one is."""
    a, b = FakeProvider("a", [ok(0.1)]), FakeProvider("b", [ok(0.1)])
    played = play([a, b], route(["a", "b"]), health=StateHealth(unavailable={"a"}))
    assert played.result is not None
    assert played.result.deployment == "b"
    assert a.calls == []


def test_nothing_available_answers_at_once_with_retry_after() -> None:
    """Rule 1: no target, no probe: NoTargetAvailable at once, Retry-After the soonest end."""
    a = FakeProvider("a", [ok(0.1)])
    health = StateHealth(unavailable={"a"}, retry_after=12.0)
    played = play([a], route(["a"]), health=health)
    assert isinstance(played.error, NoTargetAvailable)
    assert played.error.retry_after == 12.0
    assert played.answered_at == 0.0
    assert status_of(played.error) == (503, "circuit_open", 12.0)
    assert played.observer.kinds() == ["all_failed"]


def test_nothing_available_gives_the_default_when_there_is_one() -> None:
    """Rule 1: no target and no probe, with a default: the default at once."""
    a = FakeProvider("a", [ok(0.1)])
    played = play(
        [a], route(["a"], default_response=DEFAULT), health=StateHealth(unavailable={"a"})
    )
    assert played.result is not None
    assert played.result.degraded
    assert played.result.attempts == []


def test_the_early_probe_is_tried_when_nothing_else_is() -> None:
    """Rule 1: the plan's probe is tried, admitted as the half-open probe and recorded so."""
    a, b = FakeProvider("a", [ok(0.1)]), FakeProvider("b", [ok(0.1)])
    health = StateHealth(unavailable={"a", "b"}, probe="b")
    played = play([a, b], route(["a", "b"]), health=health)
    assert played.result is not None
    assert played.result.deployment == "b"
    assert played.result.attempts[0].probe
    assert health.admits == [("b", True)]


def test_a_refused_admission_moves_to_the_next_target() -> None:
    """A deployment that no longer admits (its probe slot was taken) is skipped."""
    a, b = FakeProvider("a", [ok(0.1)]), FakeProvider("b", [ok(0.1)])
    for hedge in (None, 1.0):
        played = play(
            [a, b], route(["a", "b"], hedge_after=hedge), health=StateHealth(refuse={"a"})
        )
        assert played.result is not None
        assert played.result.deployment == "b"
    assert a.calls == []


def test_every_admission_refused_is_no_target_available() -> None:
    """When health refuses every admission, nothing ran: NoTargetAvailable."""
    a = FakeProvider("a", [ok(0.1)])
    played = play([a], route(["a"]), health=StateHealth(refuse={"a"}))
    assert isinstance(played.error, NoTargetAvailable)


def test_the_completion_and_usage_come_from_the_winner() -> None:
    """The result carries the winner's completion, usage and the request id."""
    played = play([FakeProvider("a", [ok(0.1)])], route(["a"]))
    assert played.result is not None
    assert played.result.text == "from a"
    assert played.result.usage.total_tokens == 5
    assert played.result.request_id == "req-1"
    assert not played.result.degraded


def test_the_default_response_is_an_openai_completion() -> None:
    """The default is a chat.completion with the route's text, degraded, no deployment."""
    played = play(
        [FakeProvider("a", [ok(9.0)])], route(["a"], deadline=1.0, default_response=DEFAULT)
    )
    result = played.result
    assert result is not None
    assert result.degraded
    assert result.deployment is None
    assert result.text == DEFAULT
    assert result.completion["object"] == "chat.completion"
    assert result.completion["created"] == 1_700_000_000
    assert result.completion["model"] == "intent"
    assert result.completion["choices"][0]["finish_reason"] == "stop"
    assert result.usage.total_tokens == 0


class _BuggyProvider(FakeProvider):
    async def complete(self, request: ChatRequest) -> Completion:
        raise KeyError("choices")


def test_a_bug_in_an_attempt_gives_the_default(caplog: pytest.LogCaptureFixture) -> None:
    """8.2: an adapter bug (not an UpstreamError) is logged with its traceback; the default."""
    buggy = _BuggyProvider("buggy", [ok()])
    with caplog.at_level(logging.ERROR):
        played = play([buggy], route(["buggy"], default_response=DEFAULT, hedge_after=1.0))
    assert played.result is not None
    assert played.result.degraded
    assert played.final == [("buggy", 0.0, 0.0, "cancelled")]
    assert played.health.reported("buggy") == ["cancelled"]
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)
    assert played.observer.kinds() == ["all_failed", "default_served"]


def test_a_bug_without_a_default_propagates() -> None:
    """8.2 without a default: the unexpected exception itself propagates."""
    played = play([_BuggyProvider("buggy", [ok()])], route(["buggy"]))
    assert isinstance(played.error, KeyError)
    assert played.only_losers_left


class _Exploding:
    def __init__(self) -> None:
        self.seen = 0

    def on_event(self, event: Event) -> None:
        self.seen += 1
        raise RuntimeError("observer bug")


def test_an_observer_that_raises_never_breaks_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception from the observer is logged; the request answers normally."""
    observer = _Exploding()
    a = FakeProvider("a", [ok(0.1)])

    async def scenario() -> str | None:
        engine = Engine({"a": a}, {"a": a.deployment}, RecordingHealth(), observer=observer)
        return (await engine.chat(route(["a"]), REQUEST, request_id="r")).deployment

    with caplog.at_level(logging.ERROR, logger="failover.engine"):
        assert run_virtual(scenario()) == "a"
    assert observer.seen == 2
    assert sum("observer" in r.getMessage() for r in caplog.records) == 2


def test_an_unknown_target_is_a_config_error_naming_it() -> None:
    """A route naming a deployment the engine does not know fails with its key path."""
    engine = engine_for([FakeProvider("a", [ok()])])
    with pytest.raises(ConfigError, match=r"routes\.intent\.targets\[1\]: unknown deployment"):
        engine.prepare(route(["a", "ghost"]))


def test_a_not_configured_deployment_is_never_called() -> None:
    """A deployment without its key is left out of the route's plan."""
    a = FakeProvider("a", [ok(0.1)])
    keyless = DeploymentConfig(name="paid", provider="openai", model="gpt-4o-mini")
    health = RecordingHealth()

    async def scenario() -> tuple[str | None, tuple[str, ...]]:
        engine = Engine({"a": a}, {"a": a.deployment, "paid": keyless}, health)
        result = await engine.chat(route(["paid", "a"]), REQUEST, request_id="r")
        return result.deployment, engine.prepare(route(["paid", "a"])).names

    assert run_virtual(scenario()) == ("a", ("a",))
    assert health.plans == [("a",)]


def test_route_plans_are_built_once_per_route() -> None:
    """The same route config reuses its plan (and so its retry budget)."""
    engine = engine_for([FakeProvider("a", [ok()])])
    config = route(["a"])
    assert engine.prepare(config) is engine.prepare(config)
    assert engine.prepare(config) is engine.prepare(route(["a"]))
    assert engine.prepare(config) is not engine.prepare(route(["a"], deadline=3.0))


def test_no_secret_reaches_a_record_or_an_error() -> None:
    """An API key given to a deployment appears in no record, event or error message."""
    secret = "sk-very-secret-key"

    class _Keyed(FakeProvider):
        @property
        def deployment(self) -> DeploymentConfig:
            return DeploymentConfig(
                name=self.name, provider="openai", model="m", api_key=secret, timeout=1.0
            )

    keyed = _Keyed("keyed", [ok(5.0)])
    played = play([keyed], route(["keyed"], default_response=DEFAULT))
    texts: list[Any] = [repr(played.result), played.final, played.observer.events]
    assert all(secret not in repr(text) for text in texts)


# -- the request's attempt records: one list, the caller's, on success and on failure ---------


def _chat_into(
    providers: list[FakeProvider], config: RouteConfig, **kw: Any
) -> tuple[list[AttemptRecord], Any, BaseException | None]:
    """One chat with a caller-owned ``attempts`` list: (the list, the result, the error)."""
    attempts: list[AttemptRecord] = []

    async def scenario() -> tuple[Any, BaseException | None]:
        engine = engine_for(providers, **kw)
        try:
            return await engine.chat(config, REQUEST, request_id="r", attempts=attempts), None
        except Exception as error:
            return None, error
        finally:
            await engine.aclose()

    result, error = run_virtual(scenario())
    return attempts, result, error


def test_the_callers_list_is_the_results_attempts() -> None:
    """On success the records go in the list the caller gave, which the result hands back."""
    a, b = FakeProvider("a", [fail(0.1)]), FakeProvider("b", [ok(0.2)])
    attempts, result, _ = _chat_into([a, b], route(["a", "b"]))
    assert result.attempts is attempts
    assert records(attempts) == [("a", 0.0, 0.1, "server_error"), ("b", 0.1, 0.3, "success")]


def test_all_targets_failed_carries_the_callers_list() -> None:
    """Every target failing: AllTargetsFailed.attempts is the caller's list, records complete."""
    a, b = FakeProvider("a", [fail(0.1)]), FakeProvider("b", [fail(0.2, ErrorClass.TIMEOUT)])
    attempts, _, error = _chat_into([a, b], route(["a", "b"]))
    assert isinstance(error, AllTargetsFailed)
    assert error.attempts is attempts
    assert records(attempts) == [("a", 0.0, 0.1, "server_error"), ("b", 0.1, 0.3, "timeout")]


def test_no_target_available_carries_the_callers_empty_list() -> None:
    """Nothing could be tried: NoTargetAvailable.attempts is the caller's list, empty."""
    a = FakeProvider("a", [ok(0.1)])
    attempts, _, error = _chat_into([a], route(["a"]), health=StateHealth(unavailable={"a"}))
    assert isinstance(error, NoTargetAvailable)
    assert error.attempts is attempts
    assert attempts == []


def test_a_bad_request_leaves_its_record_in_the_callers_list() -> None:
    """The provider's own 400 is raised as it is; the caller's list still has its attempt."""
    a = FakeProvider("a", [fail(0.1, ErrorClass.BAD_REQUEST)])
    attempts, _, error = _chat_into([a], route(["a"]))
    assert isinstance(error, UpstreamError)
    assert records(attempts) == [("a", 0.0, 0.1, "bad_request")]


def test_a_cancelled_request_leaves_its_cancelled_records_in_the_callers_list() -> None:
    """The caller cancelled: the list it gave holds every attempt, ended as cancelled."""
    a, b = FakeProvider("a", [hang()]), FakeProvider("b", [hang()])
    attempts: list[AttemptRecord] = []

    async def scenario() -> None:
        engine = engine_for([a, b])
        task = asyncio.ensure_future(
            engine.chat(
                route(["a", "b"], hedge_after=1.0), REQUEST, request_id="r", attempts=attempts
            )
        )
        asyncio.get_running_loop().call_at(3.0, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(scenario())
    assert records(attempts) == [("a", 0.0, 3.0, "cancelled"), ("b", 1.0, 3.0, "cancelled")]


def test_a_loser_completes_its_record_in_the_callers_list_after_the_answer() -> None:
    """With finish_losers the loser runs on; its record, in the caller's list, ends later."""
    slow, fast = FakeProvider("slow", [ok(2.0)]), FakeProvider("fast", [ok(0.2)])
    config = route(["slow", "fast"], hedge_after=1.0, finish_losers=5)
    attempts: list[AttemptRecord] = []

    async def scenario() -> list[tuple[str, float, float | None, str]]:
        engine = engine_for([slow, fast])
        await engine.chat(config, REQUEST, request_id="r", attempts=attempts)
        at_answer = records(attempts)
        await asyncio.sleep(5)
        await engine.aclose()
        return at_answer

    at_answer = run_virtual(scenario())
    assert at_answer == [("slow", 0.0, None, "running"), ("fast", 1.0, 1.2, "success")]
    assert records(attempts) == [
        ("slow", 0.0, 2.0, "lost_completed"),
        ("fast", 1.0, 1.2, "success"),
    ]


def test_a_stream_hands_out_the_callers_list_and_ends_its_record() -> None:
    """open_stream fills the caller's list; the winner's record ends when the stream does."""
    pieces = ((0.0, chunk(role="assistant")), (0.1, chunk("Hi")), (0.5, chunk("!")))
    a = FakeProvider("a", [Step(0.1, pieces=pieces)])
    attempts: list[AttemptRecord] = []

    async def scenario() -> list[tuple[str, float, float | None, str]]:
        engine = engine_for([a])
        opened = await engine.open_stream(route(["a"]), REQUEST, request_id="s", attempts=attempts)
        assert opened.attempts is attempts
        at_commit = records(attempts)
        async with opened:
            async for _ in opened:
                pass
        return at_commit

    at_commit = run_virtual(scenario())
    assert at_commit == [("a", 0.0, 0.2, "success")]  # the commit; moved to the stream's end below
    assert records(attempts) == [("a", 0.0, 0.7, "success")]
