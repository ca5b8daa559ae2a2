"""Events: observers are told, and their failures never reach the request."""

from __future__ import annotations

import logging

import pytest

from failover.engine import Event, EventKind, NullObserver
from failover.engine.events import notify


def test_the_null_observer_ignores_everything() -> None:
    """NullObserver accepts any event and says what it is."""
    NullObserver().on_event(Event(EventKind.ALL_FAILED, "r", "id", 0.0))
    assert repr(NullObserver()) == "<NullObserver>"


def test_notify_logs_an_observer_failure(caplog: pytest.LogCaptureFixture) -> None:
    """An observer's exception is logged with the event kind, not raised."""

    class Broken:
        def on_event(self, event: Event) -> None:
            raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="failover.engine"):
        notify(Broken(), Event(EventKind.PRIMARY_TIMEOUT, "r", "id", 1.5, deployment="main"))
    assert len(caplog.records) == 1
    assert "primary_timeout" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is not None


def test_event_kinds_are_the_documented_names() -> None:
    """The kinds observers switch on."""
    assert {kind.value for kind in EventKind} == {
        "attempt_started",
        "attempt_ended",
        "hedge_started",
        "primary_timeout",
        "bad_request_translation",
        "all_failed",
        "default_served",
        "stream_failed",
    }
