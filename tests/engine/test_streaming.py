"""Streams (rule 8): failover before the commit, errors and gaps after it, closing, default."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from failover.clock import run_virtual
from failover.engine import CommittedStream, commits
from failover.engine.streaming import StreamWork
from failover.errors import AllTargetsFailed, ErrorClass, UpstreamError, UpstreamTimeout

from .fakes import (
    DEFAULT,
    REQUEST,
    FakeProvider,
    RecordingHealth,
    RecordingObserver,
    Step,
    chunk,
    engine_for,
    pending_tasks,
    records,
    route,
    upstream_error,
)


def content(stream_chunks: Sequence[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in stream_chunks)


def talk(*words: str, latency: float = 0.0, gap: float = 0.1) -> Step:
    """A stream: a role chunk at ``latency``, then one word every ``gap`` seconds."""
    pieces: list[tuple[float, Any]] = [(0.0, chunk(role="assistant"))]
    pieces += [(gap, chunk(word)) for word in words]
    return Step(latency, pieces=tuple(pieces))


@dataclass
class Streamed:
    deployment: str | None = None
    degraded: bool = False
    committed_at: float = 0.0
    chunks: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    failed_at: float | None = None
    attempts: list[tuple[str, float, float | None, str]] = field(default_factory=list)
    left: int = -1
    health: RecordingHealth = field(default_factory=RecordingHealth)
    observer: RecordingObserver = field(default_factory=RecordingObserver)


def stream(
    providers: Sequence[FakeProvider],
    *,
    read: int | None = None,
    **options: Any,
) -> Streamed:
    """Open a stream over ``providers`` at time 0 and read it (``read`` chunks, else all)."""
    seen = Streamed()

    async def scenario() -> Streamed:
        loop = asyncio.get_running_loop()
        engine = engine_for(providers, seen.health, observer=seen.observer)
        config = route([p.name for p in providers], **options)
        opened: CommittedStream = await engine.open_stream(config, REQUEST, request_id="s1")
        seen.deployment, seen.degraded = opened.deployment, opened.degraded
        seen.committed_at = loop.time()
        try:
            async with opened:
                async for piece in opened:
                    seen.chunks.append(piece)
                    if read is not None and len(seen.chunks) >= read:
                        break
        except UpstreamError as error:
            seen.error, seen.failed_at = error, loop.time()
        seen.attempts = records(opened.attempts)
        await engine.aclose()
        seen.left = len(pending_tasks())
        return seen

    return run_virtual(scenario())


def test_commits_on_content_tool_calls_or_refusal_only() -> None:
    """The commit needs content, tool calls or a refusal; a role or empty delta is held."""
    assert not commits(chunk(role="assistant"))
    assert not commits(chunk(""))
    assert commits(chunk("Hi"))
    assert commits({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]})
    assert commits({"choices": [{"delta": {"refusal": "no"}}]})
    assert not commits({"choices": []})


def test_a_stream_commits_at_its_first_content_and_replays_what_was_held() -> None:
    """open_stream returns at the first content chunk; the role chunk before it comes first."""
    a = FakeProvider("a", [talk("Hel", "lo", latency=0.5)])
    seen = stream([a])
    assert seen.deployment == "a"
    assert seen.committed_at == pytest.approx(0.6)
    assert content(seen.chunks) == "Hello"
    assert seen.chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert seen.attempts == [("a", 0.0, 0.7, "success")]
    assert seen.health.reported("a") == ["success"]
    assert seen.left == 0


def test_failover_before_the_first_content_chunk() -> None:
    """a fails after its role chunk, before any content: b's stream is the answer."""
    broken = Step(
        0.2, pieces=((0.0, chunk(role="assistant")), (0.1, upstream_error(ErrorClass.SERVER_ERROR)))
    )
    a = FakeProvider("a", [broken])
    b = FakeProvider("b", [talk("fine")])
    seen = stream([a, b])
    assert seen.deployment == "b"
    assert content(seen.chunks) == "fine"
    assert len(seen.chunks) == 2  # b's role chunk and its content: nothing of a's
    assert seen.attempts == [("a", 0.0, 0.3, "server_error"), ("b", 0.3, 0.4, "success")]


def test_an_error_after_the_commit_raises_from_the_iterator() -> None:
    """After the commit a failure is raised by the iterator (never a clean end), and recorded."""
    pieces = (
        (0.0, chunk(role="assistant")),
        (0.1, chunk("Hel")),
        (0.1, upstream_error(ErrorClass.SERVER_ERROR)),
    )
    a = FakeProvider("a", [Step(0.0, pieces=pieces)])
    b = FakeProvider("b", [talk("never")])
    seen = stream([a, b])
    assert isinstance(seen.error, UpstreamError)
    assert seen.error.error_class is ErrorClass.SERVER_ERROR
    assert seen.failed_at == pytest.approx(0.2)
    assert content(seen.chunks) == "Hel"
    assert seen.attempts == [("a", 0.0, 0.2, "server_error")]
    assert b.calls == []
    assert seen.health.reported("a") == ["success", "server_error"]
    assert seen.observer.kinds() == ["stream_failed"]


def test_a_gap_after_the_commit_longer_than_the_timeout_fails_the_stream() -> None:
    """After the commit the deployment's timeout is the longest gap between chunks."""
    pieces = ((0.0, chunk("Hel")), (3.0, chunk("lo")))
    a = FakeProvider("a", [Step(0.5, pieces=pieces)], timeout=2.0)
    seen = stream([a])
    assert isinstance(seen.error, UpstreamTimeout)
    assert seen.error.deployment == "a"
    assert seen.failed_at == pytest.approx(2.5)
    assert content(seen.chunks) == "Hel"
    assert seen.attempts == [("a", 0.0, 2.5, "timeout")]
    assert a.calls[0].outcome == "cancelled"
    assert seen.health.reported("a") == ["success", "timeout"]


def test_the_deadline_does_not_apply_after_the_commit() -> None:
    """A committed stream may run past the route's deadline; only the gap timeout applies."""
    a = FakeProvider("a", [talk("a", "b", "c", "d", gap=1.0)])
    seen = stream([a], deadline=1.5)
    assert seen.error is None
    assert content(seen.chunks) == "abcd"
    assert seen.attempts == [("a", 0.0, 4.0, "success")]


def test_closing_the_stream_closes_the_upstream() -> None:
    """The client goes away after two chunks: aclose() closes the upstream generator."""
    a = FakeProvider("a", [talk("a", "b", "c", "d", gap=1.0)])
    seen = stream([a], read=2)
    assert content(seen.chunks) == "a"
    assert a.calls[0].outcome == "closed"
    assert seen.attempts == [("a", 0.0, 1.0, "success")]
    assert seen.left == 0


def test_hedged_streams_race_to_the_commit() -> None:
    """The first stream to commit wins; the slower one is cancelled before its commit."""
    a = FakeProvider("a", [talk("slow", latency=3.0)])
    b = FakeProvider("b", [talk("fast", latency=0.2)])
    seen = stream([a, b], hedge_after=1.0)
    assert seen.deployment == "b"
    assert seen.committed_at == pytest.approx(1.3)
    assert seen.attempts == [("a", 0.0, 1.3, "cancelled"), ("b", 1.0, 1.3, "success")]
    assert a.calls[0].outcome == "cancelled"
    assert seen.left == 0


def test_a_background_loser_stream_is_closed_at_its_commit() -> None:
    """With finish_losers, a loser stream runs on to its commit, is recorded, then closed."""
    a = FakeProvider("a", [talk("late", "more", latency=2.0)])
    b = FakeProvider("b", [talk("fast", latency=0.2)])

    async def scenario() -> tuple[list[Any], str]:
        engine = engine_for([a, b])
        config = route(["a", "b"], hedge_after=1.0, finish_losers=4.0)
        opened = await engine.open_stream(config, REQUEST, request_id="s1")
        async with opened:
            text = content([c async for c in opened])
        await asyncio.sleep(5)
        await engine.aclose()
        return records(opened.attempts), text

    attempts, text = run_virtual(scenario())
    assert text == "fast"
    assert attempts[0] == ("a", 0.0, 2.1, "lost_completed")
    assert a.calls[0].outcome == "closed"


def test_everything_failing_before_the_commit_raises_like_chat() -> None:
    """No commit anywhere and no default: AllTargetsFailed, as chat raises."""
    a = FakeProvider("a", [Step(0.1, error=ErrorClass.SERVER_ERROR)])

    async def scenario() -> BaseException:
        engine = engine_for([a])
        with pytest.raises(AllTargetsFailed) as caught:
            await engine.open_stream(route(["a"]), REQUEST, request_id="s1")
        return caught.value

    assert isinstance(run_virtual(scenario()), AllTargetsFailed)


def test_everything_failing_gives_a_default_stream() -> None:
    """With a default, the stream is the default response as chunks, marked degraded."""
    a = FakeProvider("a", [Step(0.1, error=ErrorClass.SERVER_ERROR)])
    seen = stream([a], default_response=DEFAULT)
    assert seen.degraded
    assert seen.deployment is None
    assert content(seen.chunks) == DEFAULT
    assert seen.chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert seen.observer.kinds() == ["all_failed", "default_served"]


def test_a_stream_that_ends_before_any_content_is_an_empty_answer() -> None:
    """A stream ending cleanly with no content is a success (rule 10), not a failure."""
    a = FakeProvider("a", [Step(0.1, pieces=((0.0, chunk(role="assistant")),))])
    seen = stream([a])
    assert seen.deployment == "a"
    assert content(seen.chunks) == ""
    assert len(seen.chunks) == 1
    assert seen.attempts == [("a", 0.0, 0.1, "success")]


def test_cancelling_before_the_commit_cancels_the_upstream() -> None:
    """The client leaves before the commit: the attempt is cancelled, nothing is left open."""
    a = FakeProvider("a", [talk("late", latency=5.0)])

    async def scenario() -> tuple[str, int]:
        engine = engine_for([a])
        task = asyncio.get_running_loop().create_task(
            engine.open_stream(route(["a"]), REQUEST, request_id="s1")
        )
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return a.calls[0].outcome, len(pending_tasks())

    assert run_virtual(scenario()) == ("cancelled", 0)


def test_the_time_to_commit_is_bounded_by_the_attempt_timeout() -> None:
    """Before the commit the attempt's own timeout applies: a stream too slow to commit fails."""
    a = FakeProvider("a", [talk("slow", latency=5.0)], timeout=2.0)
    b = FakeProvider("b", [talk("ok")])
    seen = stream([a, b])
    assert seen.deployment == "b"
    assert seen.attempts[0] == ("a", 0.0, 2.0, "timeout")


def test_discarding_an_opened_stream_closes_it() -> None:
    """StreamWork.discard closes the upstream of a stream nobody will read."""
    a = FakeProvider("a", [talk("x", "y")])

    async def scenario() -> str:
        work = StreamWork()
        opened = await work.open(a, REQUEST)
        await work.discard(opened)
        return a.calls[0].outcome

    assert run_virtual(scenario()) == "closed"
