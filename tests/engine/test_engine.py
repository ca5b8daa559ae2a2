"""Engine: rule 1 (availability, probe), the answer's shapes, bugs, observers, route plans."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from failover.clock import run_virtual
from failover.config import DeploymentConfig
from failover.engine import Engine, Event, failure_status
from failover.errors import ConfigError, NoTargetAvailable
from failover.types import ChatRequest, Completion

from .fakes import (
    DEFAULT,
    REQUEST,
    FakeProvider,
    RecordingHealth,
    StateHealth,
    engine_for,
    ok,
    play,
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
    assert failure_status(played.error) == (503, "circuit_open", 12.0)
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
