"""The fault matrix: every upstream fault SPEC's failure table names, over real loopback HTTP.

One table (``FAULTS``) drives one test. Each row is a fault injected at the ``main`` deployment of
the route ``[main, fallback]`` (a :class:`MockUpstream` profile, a closed port, or a stream that
stalls after its first content chunk) and the class SPEC gives it. What follows from the class,
retry, fallback and health, is read from ``SPEC_TABLE``, a transcription of SPEC's table, so that
each row states only the fault and its class and the test checks the whole column set:

- the class (and HTTP status, where there is one) recorded on each of main's attempts;
- whether main was retried (``max_retries: 1``; a rate limit is not, the fallback being free);
- whether the request fell back to ``fallback``, or (a bad request, rule 9) raised the
  provider's own 400 instead of the route's default, or (a stream failing after its commit,
  rule 8) raised from the stream after content reached the caller;
- the health of main right after: a failure counted, the circuit open at once, a cooldown as long
  as the Retry-After / ``rate_limit_cooldown`` / ``recovery_seconds``, or nothing.

Real time, with a short deployment timeout for the slow faults and wide margins on every figure.
The last test checks that the table makes every :class:`ErrorClass` happen for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from failover import (
    AttemptRecord,
    ErrorClass,
    Gateway,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from failover.engine import Event, EventKind
from failover.health.base import DeploymentState
from failover.health.memory import MemoryHealth
from failover.mock_upstream import MockUpstream, override

MESSAGES = [{"role": "user", "content": "hello there"}]
KEY = "sk-fault-matrix-secret"
TIMEOUT = 0.5  # main's per-attempt timeout: the slow faults below are far above it
SLOW = 5.0  # seconds a slow or stalled upstream would take: ten times the timeout
RECOVERY = 30.0  # health.recovery_seconds: the break of an open circuit, the quota cooldown
RATE_LIMIT_COOLDOWN = 45.0  # health.rate_limit_cooldown: a 429 without Retry-After
RETRY_AFTER = 7.0  # what the 429s below ask for: distinct from both figures above
MARGIN = 1.5  # seconds of slack on a cooldown's end (an HTTP date is rounded to the second)
GIANT = 4 * 1024 * 1024  # bytes of answer in the giant-body faults


class Effect(enum.Enum):
    """What a failure does to its deployment's health, as SPEC's table says."""

    FAILURE = "failure counted"
    OPEN = "circuit open at once"
    COOLDOWN = "rate limited for Retry-After, else rate_limit_cooldown"
    QUOTA = "rate limited for recovery_seconds"
    NONE = "unchanged"


@dataclass(frozen=True)
class Rule:
    """One row of SPEC's failure table."""

    retried: bool  # another attempt on the same deployment (while max_retries allows)
    moves_on: bool  # the next target runs
    effect: Effect


SPEC_TABLE: Mapping[ErrorClass, Rule] = {
    ErrorClass.CONNECTION: Rule(retried=True, moves_on=True, effect=Effect.FAILURE),
    ErrorClass.TIMEOUT: Rule(retried=True, moves_on=True, effect=Effect.FAILURE),
    # Retried only when no other target is available; here the fallback always is.
    ErrorClass.RATE_LIMIT: Rule(retried=False, moves_on=True, effect=Effect.COOLDOWN),
    ErrorClass.QUOTA: Rule(retried=False, moves_on=True, effect=Effect.QUOTA),
    ErrorClass.AUTH: Rule(retried=False, moves_on=True, effect=Effect.OPEN),
    ErrorClass.CONTEXT_OVERFLOW: Rule(retried=False, moves_on=True, effect=Effect.NONE),
    ErrorClass.BAD_REQUEST: Rule(retried=False, moves_on=False, effect=Effect.NONE),
    ErrorClass.NOT_FOUND: Rule(retried=False, moves_on=True, effect=Effect.OPEN),
    ErrorClass.SERVER_ERROR: Rule(retried=True, moves_on=True, effect=Effect.FAILURE),
    ErrorClass.MALFORMED: Rule(retried=True, moves_on=True, effect=Effect.FAILURE),
}


class Upstream(enum.Enum):
    """What stands at main's ``api_base``."""

    MOCK = "the MockUpstream, with the row's profile fields"
    CLOSED_PORT = "a port bound on 127.0.0.1 that never listens: the connection is refused"
    STALL = "an SSE stream that sends its first content chunk, then nothing for SLOW seconds"


@dataclass(frozen=True)
class Fault:
    """One fault at main and the SPEC class it must be recorded as (None: a success)."""

    id: str
    error: ErrorClass | None
    mock: Mapping[str, object] = field(default_factory=dict)
    status: int | None = None  # the HTTP status on main's attempt record
    stream: bool = False
    committed: bool = False  # the stream fails after its first content chunk (rule 8)
    retry_after: float | None = None  # the Retry-After main sent (a 429's cooldown)
    upstream: Upstream = Upstream.MOCK
    timeout: float = TIMEOUT
    bug: str | None = None  # a known bug in src/: the row is a strict xfail until it is fixed

    @property
    def rule(self) -> Rule | None:
        return None if self.error is None else SPEC_TABLE[self.error]

    @property
    def main_calls(self) -> int:
        rule = self.rule
        return 2 if rule is not None and rule.retried and not self.committed else 1


def _status(code: int, **mock: object) -> dict[str, object]:
    """Profile fields for an error answer with this HTTP status on every request."""
    return {"error_rate": 1.0, "error_status": str(code), **mock}


def _event(code: str, after: int = 1, **mock: object) -> dict[str, object]:
    """Profile fields for an OpenAI error event after ``after`` stream events (1: the role)."""
    return {"stream_error_after": after, "error_code": code, **mock}


def _rate_limited(form: str) -> dict[str, object]:
    return _status(429, retry_after=RETRY_AFTER, retry_after_form=form)


C = ErrorClass

FAULTS = [
    # -- the connection --------------------------------------------------------------------
    Fault("refused", C.CONNECTION, upstream=Upstream.CLOSED_PORT),
    Fault("refused-stream", C.CONNECTION, upstream=Upstream.CLOSED_PORT, stream=True),
    Fault("reset", C.CONNECTION, {"drop": True}),
    Fault("reset-stream", C.CONNECTION, {"drop": True}, stream=True),
    Fault("body-cut-halfway", C.CONNECTION, {"stream_cut_after": 1}),
    # -- slowness: main's own timeout ------------------------------------------------------
    Fault("slow-headers", C.TIMEOUT, {"latency": SLOW}),
    Fault("hang", C.TIMEOUT, {"hang": True}),
    Fault("hang-stream", C.TIMEOUT, {"hang": True}, stream=True),
    Fault("slow-body", C.TIMEOUT, {"chunk_delay": SLOW}),
    Fault("slow-stream-before-commit", C.TIMEOUT, {"chunk_delay": SLOW}, stream=True),
    Fault("stall-after-commit", C.TIMEOUT, upstream=Upstream.STALL, stream=True, committed=True),
    # -- 200s that are not a completion (rule 10) ------------------------------------------
    Fault("invalid-json", C.MALFORMED, {"malformed": "json"}, status=200),
    Fault("invalid-json-event", C.MALFORMED, {"malformed": "json"}, status=200, stream=True),
    Fault("no-choices", C.MALFORMED, {"malformed": "no-choices"}, status=200),
    Fault("empty-choices", C.MALFORMED, {"malformed": "empty-choices"}, status=200),
    Fault(
        "no-choices-stream",
        C.MALFORMED,
        {"malformed": "no-choices"},
        status=200,
        stream=True,
    ),
    Fault("html-page", C.MALFORMED, {"malformed": "html"}, status=200),
    Fault("wrong-content-type", C.MALFORMED, {"content_type": "text/plain"}, status=200),
    Fault(
        "wrong-content-type-stream",
        C.MALFORMED,
        {"content_type": "application/json"},
        status=200,
        stream=True,
    ),
    # -- streams cut or failing ------------------------------------------------------------
    Fault("stream-cut-before-commit", C.CONNECTION, {"stream_cut_after": 1}, stream=True),
    Fault(
        "stream-cut-after-commit",
        C.CONNECTION,
        {"stream_cut_after": 3},
        stream=True,
        committed=True,
    ),
    Fault(
        "stream-silent-eof-after-commit",
        C.CONNECTION,
        {"stream_cut_after": 3, "stream_cut_mode": "eof"},
        stream=True,
        committed=True,
    ),
    Fault("error-event-before-commit", C.SERVER_ERROR, _event("server_error"), stream=True),
    Fault(
        "error-event-after-commit",
        C.SERVER_ERROR,
        _event("server_error", after=3),
        stream=True,
        committed=True,
    ),
    Fault("overloaded-event", C.SERVER_ERROR, _event("overloaded"), stream=True),
    Fault("timeout-event", C.TIMEOUT, _event("slow", error_type="timeout_error"), stream=True),
    Fault("rate-limit-event", C.RATE_LIMIT, _event("rate_limit_exceeded"), stream=True),
    Fault("quota-event", C.QUOTA, _event("insufficient_quota"), stream=True),
    Fault("auth-event", C.AUTH, _event("invalid_api_key"), stream=True),
    Fault(
        "not-found-event-anthropic",
        C.NOT_FOUND,
        _event("model_not_found", error_type="not_found_error"),
        stream=True,
    ),
    Fault(
        "not-found-event-openai",
        C.NOT_FOUND,
        _event("model_not_found"),
        stream=True,
    ),
    Fault("context-event", C.CONTEXT_OVERFLOW, _event("context_length_exceeded"), stream=True),
    Fault("bad-request-event", C.BAD_REQUEST, _event("invalid_value"), stream=True),
    # -- rate limits and quota -------------------------------------------------------------
    Fault(
        "429-retry-after-seconds",
        C.RATE_LIMIT,
        _rate_limited("seconds"),
        status=429,
        retry_after=RETRY_AFTER,
    ),
    Fault(
        "429-retry-after-date",
        C.RATE_LIMIT,
        _rate_limited("date"),
        status=429,
        retry_after=RETRY_AFTER,
    ),
    Fault(
        "429-retry-after-ms",
        C.RATE_LIMIT,
        _rate_limited("ms"),
        status=429,
        retry_after=RETRY_AFTER,
    ),
    Fault(
        "429-retry-after-ms-stream",
        C.RATE_LIMIT,
        _rate_limited("ms"),
        status=429,
        retry_after=RETRY_AFTER,
        stream=True,
    ),
    Fault("429-without-retry-after", C.RATE_LIMIT, _status(429), status=429),
    Fault(
        "429-insufficient-quota",
        C.QUOTA,
        _status(429, error_code="insufficient_quota"),
        status=429,
    ),
    Fault("402-billing", C.QUOTA, _status(402), status=402),
    # -- the deployment is misconfigured ---------------------------------------------------
    Fault("401", C.AUTH, _status(401), status=401),
    Fault("401-stream", C.AUTH, _status(401), status=401, stream=True),
    Fault("403", C.AUTH, _status(403), status=403),
    Fault("404-model-not-found", C.NOT_FOUND, _status(404), status=404),
    # -- the request is at fault -----------------------------------------------------------
    Fault(
        "400-context-length-exceeded",
        C.CONTEXT_OVERFLOW,
        _status(400, error_code="context_length_exceeded"),
        status=400,
    ),
    Fault("400-other", C.BAD_REQUEST, _status(400), status=400),
    Fault("400-other-stream", C.BAD_REQUEST, _status(400), status=400, stream=True),
    Fault("413", C.BAD_REQUEST, _status(413), status=413),
    Fault("422", C.BAD_REQUEST, _status(422), status=422),
    # -- the server is at fault ------------------------------------------------------------
    Fault("500", C.SERVER_ERROR, _status(500), status=500),
    Fault("503", C.SERVER_ERROR, _status(503), status=503),
    Fault("503-html-body", C.SERVER_ERROR, _status(503, error_body="html"), status=503),
    Fault("503-stream", C.SERVER_ERROR, _status(503), status=503, stream=True),
    Fault("529-overloaded", C.SERVER_ERROR, _status(529), status=529),
    Fault("408", C.TIMEOUT, _status(408), status=408),
    Fault("409", C.TIMEOUT, _status(409), status=409),
    # -- big is not broken: no limit, a plain success --------------------------------------
    Fault("giant-body", None, {"giant": GIANT}, timeout=10.0),
    Fault("giant-stream", None, {"giant": GIANT}, stream=True, timeout=10.0),
]


def _param(fault: Fault) -> Any:
    marks = [] if fault.bug is None else [pytest.mark.xfail(strict=True, reason=fault.bug)]
    return pytest.param(fault, id=fault.id, marks=marks)


class AttemptLog:
    """An engine observer that keeps every attempt record (completed in place as they end)."""

    def __init__(self) -> None:
        self.records: list[AttemptRecord] = []

    def on_event(self, event: Event) -> None:
        if event.kind is EventKind.ATTEMPT_STARTED and event.attempt is not None:
            self.records.append(event.attempt)


@dataclass
class Answer:
    """What the caller got: the text it received, and the error raised to it (if any)."""

    text: str
    error: UpstreamError | None


@contextlib.contextmanager
def _closed_port() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but never listening: a connect is refused (RST)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _sse(delta: dict[str, object]) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@contextlib.asynccontextmanager
async def _stalling_upstream(calls: list[int]) -> AsyncIterator[str]:
    """A stream whose first content chunk comes at once and the rest never in time.

    The mock's ``chunk_delay`` spaces every event alike, so it cannot commit a stream in time and
    then stall it; this tiny server does.
    """

    async def chat(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            _sse({"role": "assistant", "content": ""}) + _sse({"content": "Hello"})
        )
        await asyncio.sleep(SLOW)  # cancelled when the client leaves
        await response.write(_sse({"content": " late"}) + b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def _config(fault: Fault, main_url: str, fallback_url: str) -> dict[str, Any]:
    deployment = {"provider": "openai-compatible", "api_key": KEY, "max_retries": 1}
    return {
        "store": {"url": "none"},
        "health": {
            "check_on_startup": False,
            "recovery_seconds": RECOVERY,
            "rate_limit_cooldown": RATE_LIMIT_COOLDOWN,
        },
        "deployments": {
            "main": {**deployment, "model": "m", "api_base": main_url, "timeout": fault.timeout},
            "fallback": {**deployment, "model": "f", "api_base": fallback_url, "timeout": 10},
        },
        "routes": {
            "intent": {
                "targets": ["main", "fallback"],
                # Rule 9 says a bad request never gets it; nothing else here should either.
                "default_response": "DEFAULT",
                "retry": {"backoff": 0.01, "max_backoff": 0.02, "jitter": False},
            }
        },
    }


async def _ask(gw: Gateway, fault: Fault) -> Answer:
    """Run one request, chat or stream, and keep what the caller saw."""
    if not fault.stream:
        try:
            result = await gw.chat("intent", MESSAGES)
        except UpstreamError as error:
            return Answer("", error)
        return Answer(result.text, None)
    pieces: list[str] = []
    try:
        async for chunk in gw.stream("intent", MESSAGES):
            for choice in chunk.get("choices") or ():
                pieces.append(choice["delta"].get("content") or "")
    except UpstreamError as error:
        return Answer("".join(pieces), error)
    return Answer("".join(pieces), None)


@pytest.mark.parametrize("fault", [_param(fault) for fault in FAULTS])
async def test_fault(fault: Fault) -> None:
    """Each upstream fault gets SPEC's class, retry, fallback and health effect."""
    log = AttemptLog()
    stall_calls: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        main = await stack.enter_async_context(MockUpstream("healthy", name="main", seed=1))
        fallback = await stack.enter_async_context(MockUpstream("healthy", name="fallback"))
        if fault.upstream is Upstream.CLOSED_PORT:
            main_url = stack.enter_context(_closed_port())
        elif fault.upstream is Upstream.STALL:
            main_url = await stack.enter_async_context(_stalling_upstream(stall_calls))
        else:
            main.set_profile(override(main.profile, fault.mock))
            main_url = main.url
        gw = await stack.enter_async_context(
            Gateway.from_dict(_config(fault, main_url, fallback.url), observer=log)
        )
        answer = await _ask(gw, fault)
        assert isinstance(gw.health, MemoryHealth)
        health = gw.health.snapshot()["main"]

    main_records = [r for r in log.records if r.deployment == "main"]
    fallback_records = [r for r in log.records if r.deployment == "fallback"]
    rule = fault.rule
    assert KEY not in repr(log.records)
    assert KEY not in repr(answer.error)
    assert KEY not in str(answer.error)

    # Main's attempts: how many, and the class each one recorded.
    assert len(main_records) == fault.main_calls
    if fault.upstream is Upstream.MOCK:
        assert main.stats.requests == fault.main_calls
    elif fault.upstream is Upstream.STALL:
        assert len(stall_calls) == 1
    for record in main_records:
        expected = "success" if fault.error is None else fault.error.value
        assert record.outcome == expected
        assert record.error_class == (None if fault.error is None else fault.error.value)
        assert record.status == fault.status

    # What the request did next.
    if rule is None:
        assert answer.error is None
        assert len(answer.text) == GIANT
        assert fallback.stats.requests == 0
    elif fault.committed:
        # Rule 8: content reached the caller, then an error; never a clean end, no fallback.
        assert answer.error is not None
        assert answer.error.error_class is fault.error
        assert answer.text.startswith("Hello")
        assert fallback.stats.requests == 0
        assert not fallback_records
    elif rule.moves_on:
        assert answer.error is None
        assert answer.text.startswith("Hello from fallback")
        assert fallback.stats.requests == 1
        assert [r.outcome for r in fallback_records] == ["success"]
    else:
        # Rule 9: the provider's 400 as it worded it, never the fallback nor the default.
        assert isinstance(answer.error, UpstreamStatusError)
        assert answer.error.error_class is ErrorClass.BAD_REQUEST
        assert answer.error.status == fault.status
        assert "mock upstream main" in answer.error.message
        assert answer.text == ""
        assert fallback.stats.requests == 0
    if fault.error is ErrorClass.TIMEOUT and fault.status is None and answer.error is not None:
        assert isinstance(answer.error, UpstreamTimeout)

    # Main's health right after the request.
    effect = Effect.NONE if rule is None else rule.effect
    if effect is Effect.FAILURE:
        assert health.state is DeploymentState.AVAILABLE
        assert health.failures == fault.main_calls
        assert health.last_error is fault.error
        assert health.until is None
    elif effect is Effect.NONE:
        assert health.state is DeploymentState.AVAILABLE
        assert health.failures == 0
        assert health.last_error is None
        assert health.until is None
    else:
        waits = {
            Effect.OPEN: (DeploymentState.CIRCUIT_OPEN, RECOVERY),
            Effect.QUOTA: (DeploymentState.RATE_LIMITED, RECOVERY),
            Effect.COOLDOWN: (DeploymentState.RATE_LIMITED, fault.retry_after),
        }
        state, seconds = waits[effect]
        assert health.state is state
        assert health.last_error is fault.error
        assert health.until is not None
        assert abs(health.until - (seconds or RATE_LIMIT_COOLDOWN)) <= MARGIN


def test_every_error_class_is_produced_by_a_fault() -> None:
    """Every ErrorClass is the recorded class of at least one working row of the table."""
    produced = {f.error for f in FAULTS if f.error is not None and f.bug is None}
    assert set(SPEC_TABLE) == set(ErrorClass)
    assert produced == set(ErrorClass)


def test_fault_ids_are_unique() -> None:
    """Each row of the table has its own id, so a failure names one fault."""
    ids = [fault.id for fault in FAULTS]
    assert len(ids) == len(set(ids))
