"""The mock upstream's HTTP server: aiohttp handlers that carry out each request's decision."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from failover.mock_upstream import hostile, send
from failover.mock_upstream.decide import (
    HEADER_PREFIX,
    Decision,
    Outcome,
    RateBudget,
    decide,
    request_profile,
)
from failover.mock_upstream.profiles import PROFILES, Profile, override, profile_to_dict
from failover.mock_upstream.stats import MockStats
from failover.mock_upstream.wire import (
    DONE,
    ERROR_CODES,
    EVENT_STREAM,
    JSON,
    Content,
    ErrorShape,
    completion,
    count_words,
    error_body,
    error_event,
    error_shape,
    malformed_body,
    malformed_event,
    models_body,
    retry_after_headers,
    stream_events,
)

__all__ = ["MockUpstream"]

_PREFIX = HEADER_PREFIX.encode()
_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # room for context-overflow tests with huge prompts
# Past this, shutdown cancels what still runs (hangs, long latencies): closing must be quick.
_SHUTDOWN_SECONDS = 0.25


class MockUpstream:
    """A fault-injecting OpenAI-compatible server on 127.0.0.1, in the running event loop.

    >>> async def example() -> None:
    ...     async with MockUpstream("flaky", name="primary", seed=1) as mock:
    ...         print(mock.url)  # http://127.0.0.1:PORT/v1, for base_url / api_base
    ...         mock.set_profile("down")  # faults can change during a run
    ...         print(mock.stats.requests)
    """

    def __init__(
        self,
        profile: str | Profile = "healthy",
        *,
        name: str | None = None,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._profile = _named(profile)
        self.name = name or self._profile.name
        self.host = host
        self.port = port
        self.stats = MockStats()
        self._rng = random.Random(seed)
        self._budget = self._new_budget(self._profile)
        self._answer = Content.of(f"Hello from {self.name}. This is a mock answer.")
        self._id_prefix = b"chatcmpl-" + re.sub(r"[^A-Za-z0-9_-]", "", self.name).encode()[:32]
        self._ids = itertools.count(1)
        self._errors: dict[tuple[ErrorShape, str], tuple[bytes, str]] = {}
        self._models = models_body(["mock-model"], self.name)
        self._runner: web.AppRunner | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (the control API and ``/health`` live here)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        return f"{self.base_url}/v1"

    @property
    def profile(self) -> Profile:
        """The active profile."""
        return self._profile

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one, then readable from ``.port``)."""
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_mock/profile", self._get_profile)
        app.router.add_put("/_mock/profile", self._put_profile)
        app.router.add_get("/_mock/stats", self._get_stats)
        app.router.add_delete("/_mock/stats", self._delete_stats)
        # handler_cancellation: a client that leaves cancels its handler, so hangs and latencies
        # end with the connection and are counted as client disconnects.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_SECONDS,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def aclose(self) -> None:
        """Stop listening; requests still running (hangs included) are cut off."""
        if self._runner is not None:
            self._closing = True
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> MockUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def set_profile(
        self, profile: str | Profile | None = None, seed: int | None = None, **changes: object
    ) -> Profile:
        """Switch to ``profile`` (a name or a Profile; None: keep the current one), apply
        ``changes`` (field name -> value, as :func:`override` reads them), reseed when ``seed``
        is given; returns the new profile. Raises ValueError, leaving the old one active."""
        base = self._profile if profile is None else _named(profile)
        new = override(base, changes) if changes else base
        if seed is not None:
            self._rng.seed(seed)
        if new.rps_limit != self._profile.rps_limit or profile is not None:
            self._budget = self._new_budget(new)
        self._profile = new
        return new

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "not started"
        return f"<MockUpstream {self.name!r} profile={self._profile.name} {where}>"

    @staticmethod
    def _new_budget(profile: Profile) -> RateBudget | None:
        if profile.rps_limit is None:
            return None
        return RateBudget(profile.rps_limit, now=time.monotonic())

    # -- the OpenAI API ----------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, self._answer_chat)

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, self._answer_models)

    async def _counted(
        self,
        request: web.Request,
        answer: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.paths[request.path] = stats.paths.get(request.path, 0) + 1
        try:
            return await answer(request)
        except asyncio.CancelledError:
            # The handler is cancelled when its client goes away (or at our own shutdown).
            if not self._closing:
                stats.client_disconnects += 1
            raise
        finally:
            stats.in_flight -= 1

    async def _answer_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._bad_request("the request body is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            return self._bad_request("'messages' must be a list")
        try:
            profile, decision = self._decide(request)
        except ValueError as exc:
            return self._bad_request(str(exc))
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.outcome is Outcome.OK:
            return await self._complete(request, data, profile)
        if decision.outcome is Outcome.MALFORMED:
            return await self._malformed(request, data, decision)
        if decision.outcome is Outcome.HOSTILE:
            shapes = self._chat_shapes(data, profile, decision)
            return await self._hostile(request, profile, decision, shapes)
        return await self._fault(request, profile, decision)

    async def _answer_models(self, request: web.Request) -> web.StreamResponse:
        try:
            profile, decision = self._decide(request)
        except ValueError as exc:
            return self._bad_request(str(exc))
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.outcome in (Outcome.OK, Outcome.MALFORMED):
            self.stats.count(Outcome.OK, 200)
            return web.Response(body=self._models, content_type="application/json")
        if decision.outcome is Outcome.HOSTILE:
            shapes = self._chat_shapes({"messages": []}, profile, decision).with_models()
            return await self._hostile(request, profile, decision, shapes)
        return await self._fault(request, profile, decision)

    def _decide(self, request: web.Request) -> tuple[Profile, Decision]:
        """The request's profile (headers applied) and fate; ValueError for a bad header."""
        profile = self._profile
        if _has_mock_headers(request.raw_headers):
            profile = request_profile(profile, request.headers.items(), PROFILES)
        budget = self._budget
        over_budget = budget is not None and not budget.allow(time.monotonic())
        code = profile.error_code
        default_status = ERROR_CODES[code][0] if code is not None and code in ERROR_CODES else 500
        return profile, decide(
            profile, self._rng, over_budget=over_budget, default_status=default_status
        )

    async def _complete(
        self, request: web.Request, data: dict[str, Any], profile: Profile
    ) -> web.StreamResponse:
        ident = b"%s-%d" % (self._id_prefix, next(self._ids))
        model = data.get("model")
        model_json = orjson.dumps(model) if isinstance(model, str) else b'"mock-model"'
        prompt = count_words(data["messages"])
        content = self._answer if profile.giant is None else Content.giant(profile.giant)
        created = int(time.time())
        if data.get("stream") is True:
            options = data.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            events = stream_events(ident, created, model_json, prompt, content, usage)
            return await self._stream(request, profile, events)
        body = completion(ident, created, model_json, prompt, content)
        content_type = profile.content_type or JSON
        if profile.stream_cut_after is not None:
            self.stats.count("body_cut", 200)
            return await send.cut_body(request, self.stats, body, content_type)
        self.stats.count(Outcome.OK, 200)
        if profile.chunk_delay:
            return await send.slow_body(
                request, self.stats, body, content_type, profile.chunk_delay
            )
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _stream(
        self, request: web.Request, profile: Profile, events: list[bytes]
    ) -> web.StreamResponse:
        cut = False
        if profile.stream_error_after is not None:
            shape = error_shape(
                None, profile.error_code or "server_error", profile.error_type, name=self.name
            )
            events = [*events[: profile.stream_error_after], error_event(shape)]
            self.stats.count("stream_error", 200)
        elif profile.stream_cut_after is not None:
            events = events[: profile.stream_cut_after]
            cut = profile.stream_cut_mode == "close"
            self.stats.count("stream_cut", 200)
        else:
            events.append(DONE)
            self.stats.count(Outcome.OK, 200)
        headers = {
            "Content-Type": profile.content_type or EVENT_STREAM,
            "Cache-Control": "no-cache",
        }
        return await send.events(request, self.stats, headers, events, profile.chunk_delay, cut=cut)

    async def _malformed(
        self, request: web.Request, data: dict[str, Any], decision: Decision
    ) -> web.StreamResponse:
        self.stats.count(Outcome.MALFORMED, 200)
        mode = decision.malformed or "json"
        ident = b"%s-%d" % (self._id_prefix, next(self._ids))
        model = data.get("model")
        model_json = orjson.dumps(model) if isinstance(model, str) else b'"mock-model"'
        created = int(time.time())
        if data.get("stream") is True and mode != "html":
            event = malformed_event(mode, ident, created, model_json)
            return web.Response(body=event + DONE, headers={"Content-Type": EVENT_STREAM})
        body, content_type = malformed_body(mode, ident, created, model_json)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _fault(
        self, request: web.Request, profile: Profile, decision: Decision
    ) -> web.StreamResponse:
        if decision.outcome is Outcome.DROP:
            self.stats.count(Outcome.DROP)
            send.close(request, reset=True)
            return web.Response()
        if decision.outcome is Outcome.HANG:
            self.stats.count(Outcome.HANG)
            # Until the client leaves or the server shuts down, both of which cancel this.
            await asyncio.get_running_loop().create_future()
        shape = self._shape(decision.status, profile, decision.outcome is Outcome.RATE_LIMITED)
        self.stats.count(decision.outcome, shape.status)
        body, content_type = self._error_body(shape, profile.error_body)
        headers = {"Content-Type": content_type}
        if profile.retry_after is not None:
            headers.update(
                retry_after_headers(profile.retry_after, profile.retry_after_form, time.time())
            )
        return web.Response(status=shape.status, body=body, headers=headers)

    def _chat_shapes(
        self, data: dict[str, Any], profile: Profile, decision: Decision
    ) -> hostile.Shapes:
        ident = b"%s-%d" % (self._id_prefix, next(self._ids))
        model = data.get("model")
        options = data.get("stream_options")
        return hostile.Shapes.chat(
            ident,
            int(time.time()),
            orjson.dumps(model) if isinstance(model, str) else b'"mock-model"',
            count_words(data.get("messages")),
            stream=data.get("stream") is True,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            tokens=hostile.tokens(decision.hostile, profile.hostile_bytes),
        )

    async def _hostile(
        self, request: web.Request, profile: Profile, decision: Decision, shapes: hostile.Shapes
    ) -> web.StreamResponse:
        mode = decision.hostile
        assert mode is not None  # decide() names the mode of every hostile outcome
        self.stats.count("hostile_" + mode.replace("-", "_"), decision.status)
        planned = hostile.answer(
            mode,
            shapes,
            status=decision.status,
            authorization=request.headers.get("Authorization", ""),
            size=profile.hostile_bytes,
            drip_interval=profile.drip_interval,
        )
        return await send.pieces(
            request,
            self.stats,
            planned.status,
            planned.content_type,
            planned.parts,
            length=planned.length,
            delay=planned.delay,
        )

    def _shape(self, status: int, profile: Profile, rate_limited: bool = False) -> ErrorShape:
        code = "rate_limit_exceeded" if rate_limited else profile.error_code
        return error_shape(status, code, profile.error_type, name=self.name)

    def _error_body(self, shape: ErrorShape, form: str) -> tuple[bytes, str]:
        key = (shape, form)
        cached = self._errors.get(key)
        if cached is None:
            if len(self._errors) > 256:  # bounded: header-made shapes are unbounded in number
                self._errors.clear()
            cached = self._errors[key] = error_body(shape, form)
        return cached

    def _bad_request(self, message: str) -> web.Response:
        self.stats.count("bad_request", 400)
        return send.invalid(message)

    # -- /health and the control API ---------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "name": self.name}, dumps=_dumps)

    async def _get_profile(self, request: web.Request) -> web.Response:
        return web.json_response(profile_to_dict(self._profile), dumps=_dumps)

    async def _put_profile(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            name = data.pop("profile", None)
            seed = data.pop("seed", None)
            if name is not None and not isinstance(name, str):
                raise ValueError("'profile' must be a profile name")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise ValueError("'seed' must be an integer")
            profile = self.set_profile(name, seed=seed, **data)
        except (ValueError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
            return send.invalid(str(exc.args[0] if exc.args else exc))
        return web.json_response(profile_to_dict(profile), dumps=_dumps)

    async def _get_stats(self, request: web.Request) -> web.Response:
        data = {"name": self.name, "profile": self._profile.name, **self.stats.as_dict()}
        return web.json_response(data, dumps=_dumps)

    async def _delete_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.as_dict(), dumps=_dumps)


def _named(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    found = PROFILES.get(profile)
    if found is None:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return found


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _has_mock_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(key[:7].lower() == _PREFIX for key, _ in raw_headers)
