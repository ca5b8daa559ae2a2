"""What a stream may make the engine hold before its commit, and the loop's share while it reads.

Fake providers here are scripted async generators (as in :mod:`tests.engine.fakes`); ``Flood``
yields its chunks without ever awaiting, as the wire does when its buffer is full: the reader
must still give the loop turns. The same attacks over real loopback HTTP through the gateway are
in :mod:`tests.engine.test_hostile_streams`.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from failover.clock import run_virtual
from failover.config import DeploymentConfig
from failover.engine import CommittedStream
from failover.engine.events import EventKind
from failover.engine.streaming import (
    MAX_CHUNKS_BEFORE_COMMIT,
    MAX_HELD_BYTES,
    StreamWork,
    carries_nothing,
    weight,
)
from failover.errors import ErrorClass, MalformedResponse
from failover.types import ChatRequest, Completion, StreamChunk

from .fakes import (
    REQUEST,
    FakeProvider,
    RecordingHealth,
    RecordingObserver,
    Step,
    chunk,
    records,
    route,
)
from .fakes import engine_for as _engine_for
from .test_streaming import content, stream, talk

BLANK = chunk("")  # an empty delta: nothing for the client


class Chunk(dict[str, Any]):
    """A chunk a test can hold a weak reference to."""

    __slots__ = ("__weakref__",)


@dataclass
class Flood:
    """A provider whose stream yields ``chunks()`` without awaiting anything between them."""

    name: str
    chunks: Any  # a callable giving a fresh iterator of chunks per call
    timeout: float = 30.0
    calls: list[str] = field(default_factory=list)

    @property
    def deployment(self) -> DeploymentConfig:
        return DeploymentConfig(
            name=self.name,
            provider="openai-compatible",
            model=self.name,
            api_base="http://127.0.0.1:9/v1",
            timeout=self.timeout,
            max_retries=0,
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[StreamChunk]:
        self.calls.append("started")
        try:
            for piece in self.chunks():
                yield piece
        except GeneratorExit:
            self.calls.append("closed")
            raise
        self.calls.append("ended")

    async def complete(self, request: ChatRequest) -> Completion:
        raise NotImplementedError

    async def probe(self) -> None:
        return None


def engine_for(providers: list[Any], health: RecordingHealth, observer: RecordingObserver) -> Any:
    return _engine_for(providers, health, observer=observer)


def answered_by(providers: list[Any], health: RecordingHealth, observer: RecordingObserver) -> Any:
    """Open a stream over ``providers`` (virtual time); who answered it."""

    async def scenario() -> str | None:
        engine = engine_for(providers, health, observer)
        config = route([p.name for p in providers])
        opened: CommittedStream = await engine.open_stream(config, REQUEST, request_id="s1")
        await opened.aclose()
        await engine.aclose()
        return opened.deployment

    return run_virtual(scenario())


def role_then(filler: StreamChunk, count: int, *, then: StreamChunk | None = None) -> Any:
    """A script: the role chunk, ``count`` times ``filler``, ``then`` if any, the end."""

    def chunks() -> Iterator[StreamChunk]:
        yield chunk(role="assistant")
        for _ in range(count):
            yield filler
        if then is not None:
            yield then

    return chunks


def errors_of(observer: RecordingObserver, deployment: str) -> list[BaseException | None]:
    return [
        e.error
        for e in observer.events
        if e.kind is EventKind.ATTEMPT_ENDED and e.deployment == deployment
    ]


def test_chunks_that_carry_nothing_are_told_apart() -> None:
    """Empty deltas, null finish reasons and the envelope carry nothing; a role, reasoning,
    a finish reason, usage, logprobs or a provider's own field do."""
    assert carries_nothing(BLANK)
    assert carries_nothing({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}}]})
    assert carries_nothing({"choices": [{"delta": {"content": None}, "logprobs": None}]})
    assert carries_nothing({"id": "c", "choices": [], "usage": None, "obfuscation": "x1"})
    assert not carries_nothing(chunk(role="assistant"))
    assert not carries_nothing({"choices": [{"index": 0, "delta": {"reasoning_content": "h"}}]})
    assert not carries_nothing({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert not carries_nothing({"choices": [], "usage": {"total_tokens": 3}})
    assert not carries_nothing({"choices": [{"index": 0, "delta": {}, "logprobs": {"c": []}}]})
    assert not carries_nothing({"choices": [], "prompt_filter_results": [{"index": 0}]})


def test_weight_estimates_what_a_chunk_takes_in_memory() -> None:
    """The estimate grows with strings, containers and items, and walks deep nesting."""
    small = weight(chunk(role="assistant"))
    assert 300 < small < 2048
    assert weight({"pad": "x" * 100_000}) > 100_000
    assert weight({"pad": "é" * 100_000}) > 400_000
    assert weight({"pad": [{"a": i} for i in range(1000)]}) > 100_000
    deep: Any = []
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    assert weight(deep) >= 5000 * 56


def test_empty_deltas_are_counted_not_held_and_what_matters_is_replayed_in_order() -> None:
    """Blanks before the commit are dropped; role, filter results, reasoning, logprobs and the
    content come out in the order sent."""
    filters = {"choices": [], "prompt_filter_results": [{"prompt_index": 0}]}
    reasoning = {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}
    logprobs = {"choices": [{"index": 0, "delta": {}, "logprobs": {"content": []}}]}
    pieces: list[tuple[float, Any]] = [(0.0, chunk(role="assistant"))]
    for piece in (BLANK, filters, BLANK, reasoning, BLANK, logprobs, BLANK, chunk("Hi")):
        pieces.append((0.01, piece))
    a = FakeProvider("a", [Step(0.1, pieces=tuple(pieces))])
    seen = stream([a])
    assert seen.deployment == "a"
    assert seen.chunks == [chunk(role="assistant"), filters, reasoning, logprobs, chunk("Hi")]


def test_a_stream_of_nothing_but_blanks_answers_one_of_them() -> None:
    """A stream that ends with only empty deltas is still an (empty) answer, with one choice."""
    a = FakeProvider("a", [Step(0.1, pieces=tuple((0.01, BLANK) for _ in range(5)))])
    seen = stream([a])
    assert seen.deployment == "a"
    assert seen.chunks == [BLANK]
    assert seen.attempts == [("a", 0.0, pytest.approx(0.15), "success")]


def test_past_the_chunk_bound_the_attempt_fails_as_malformed_and_failover_moves_on() -> None:
    """Role then empty deltas without end (never awaiting): malformed at the bound, b answers."""
    a = Flood("a", role_then(BLANK, 2 * MAX_CHUNKS_BEFORE_COMMIT))
    b = FakeProvider("b", [talk("fine")])
    health, observer = RecordingHealth(), RecordingObserver()

    async def scenario() -> tuple[str | None, str, list[Any]]:
        engine = engine_for([a, b], health, observer)
        config = route(["a", "b"])
        opened: CommittedStream = await engine.open_stream(config, REQUEST, request_id="s1")
        async with opened:
            text = content([piece async for piece in opened])
        await engine.aclose()
        return opened.deployment, text, records(opened.attempts)

    deployment, text, attempts = run_virtual(scenario())
    assert (deployment, text) == ("b", "fine")
    assert [(name, outcome) for name, _, _, outcome in attempts] == [
        ("a", "malformed"),
        ("b", "success"),
    ]
    assert health.reported("a") == ["malformed"]
    (error,) = errors_of(observer, "a")
    assert isinstance(error, MalformedResponse)
    assert error.error_class is ErrorClass.MALFORMED
    assert f"over {MAX_CHUNKS_BEFORE_COMMIT} chunks before any content" in str(error)
    assert a.calls == ["started", "closed"]  # its connection is closed at once


def test_past_the_size_bound_the_attempt_fails_as_malformed() -> None:
    """Chunks that carry something but never commit are held up to MAX_HELD_BYTES, no further."""
    pad = "x" * (1024 * 1024)
    fat = {"choices": [{"index": 0, "delta": {"role": "assistant"}}], "pad": pad}
    a = Flood("a", role_then(fat, MAX_HELD_BYTES // len(pad) + 8, then=chunk("late")))
    b = FakeProvider("b", [talk("fine")])
    health, observer = RecordingHealth(), RecordingObserver()
    assert answered_by([a, b], health, observer) == "b"
    (error,) = errors_of(observer, "a")
    assert isinstance(error, MalformedResponse)
    assert f"over the bound of {MAX_HELD_BYTES // 1024} KiB held" in str(error)


def test_what_was_held_is_let_go_as_soon_as_the_bound_is_passed() -> None:
    """No held chunk outlives the failure, even while its error (and traceback) is kept and no
    garbage collection runs."""
    refs: list[weakref.ref[Chunk]] = []

    def chunks() -> Iterator[StreamChunk]:
        for i in range(1000):
            piece = Chunk(choices=[{"index": 0, "delta": {"role": "assistant"}}], n=i)
            refs.append(weakref.ref(piece))
            yield piece

    work = StreamWork(max_chunks=100)
    provider = Flood("a", chunks)

    async def scenario() -> MalformedResponse:
        with pytest.raises(MalformedResponse) as caught:
            await work.open(provider, REQUEST)
        return caught.value

    gc.disable()
    try:
        error = run_virtual(scenario())
        alive = [ref for ref in refs if ref() is not None]
    finally:
        gc.enable()
    assert error.__traceback__ is not None
    assert len(refs) == 101
    assert alive == []


@pytest.mark.parametrize(
    "odd", [{"choices": "abc"}, {"choices": [1]}, {"choices": [{"index": 0, "delta": "x"}]}]
)
def test_a_chunk_that_is_not_a_chunk_is_malformed(odd: StreamChunk) -> None:
    """choices or a delta that are not objects: the attempt fails as malformed, b answers."""
    a = Flood("a", role_then(odd, 1, then=chunk("never")))
    b = FakeProvider("b", [talk("fine")])
    health, observer = RecordingHealth(), RecordingObserver()
    assert answered_by([a, b], health, observer) == "b"
    assert health.reported("a") == ["malformed"]


async def count_turns(work: Any) -> tuple[Any, int]:
    """Run ``work`` while another task counts the loop turns it gets."""
    turns = 0
    running = True

    async def other() -> None:
        nonlocal turns
        while running:
            await asyncio.sleep(0)
            turns += 1

    task = asyncio.get_running_loop().create_task(other())
    await asyncio.sleep(0)  # let it start
    start = turns
    try:
        value = await work
    finally:
        running = False
        await task
    return value, turns - start


async def test_before_the_commit_a_reader_that_never_waits_gives_the_loop_turns() -> None:
    """10,000 chunks that are all ready at once: other tasks still run while they are read."""
    provider = Flood("a", role_then(BLANK, 10_000, then=chunk("Hi")))
    opened, turns = await count_turns(StreamWork().open(provider, REQUEST))
    assert content(opened.held) == "Hi"
    assert turns >= 10_000 // 64


async def test_after_the_commit_a_reader_that_never_waits_gives_the_loop_turns() -> None:
    """A committed stream whose chunks are all ready at once: other tasks still run."""
    words = Flood("a", role_then(chunk("w"), 10_000))
    engine = engine_for([words], RecordingHealth(), RecordingObserver())
    opened: CommittedStream = await engine.open_stream(route(["a"]), REQUEST, request_id="s1")

    async def read() -> int:
        async with opened:
            return len([piece async for piece in opened])

    read_count, turns = await count_turns(read())
    await engine.aclose()
    assert read_count == 10_001
    assert turns >= 10_000 // 64
