"""What a mock upstream has seen: the counters behind ``GET /_mock/stats``."""

from __future__ import annotations

from typing import Any

__all__ = ["MockStats"]


class MockStats:
    """What a mock upstream has seen since it started (or since ``reset()``).

    ``outcomes`` counts :class:`~failover.mock_upstream.decide.Outcome` values plus
    ``stream_cut``, ``stream_error``, ``body_cut`` and ``bad_request``; ``client_disconnects``
    counts requests whose client went away before the answer was complete.
    """

    __slots__ = ("client_disconnects", "in_flight", "outcomes", "paths", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.client_disconnects = 0
        self.outcomes: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.paths: dict[str, int] = {}

    def reset(self) -> None:
        """Zero every counter but ``in_flight`` (those requests are still running)."""
        self.requests = self.client_disconnects = 0
        self.outcomes.clear()
        self.statuses.clear()
        self.paths.clear()

    def count(self, outcome: str, status: int | None = None) -> None:
        """Count one answer's outcome (and its status, when one was sent)."""
        outcome = str(outcome)  # an Outcome member becomes its plain value, for JSON keys
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if status is not None:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready values (``GET /_mock/stats``)."""
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "client_disconnects": self.client_disconnects,
            "outcomes": dict(self.outcomes),
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "paths": dict(self.paths),
        }

    def __repr__(self) -> str:
        outcomes = " ".join(f"{name}={n}" for name, n in sorted(self.outcomes.items()))
        return (
            f"<MockStats requests={self.requests} in_flight={self.in_flight} "
            f"disconnects={self.client_disconnects} {outcomes}>"
        )
