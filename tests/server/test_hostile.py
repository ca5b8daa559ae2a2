"""Hostile input at the HTTP API, over raw sockets: no 500, no crash, nothing held for long.

Oversized and lying bodies, oversized heads, slow clients (slowloris), auth bypass attempts,
path tricks in ``/v1/requests/{id}`` and fuzzed bodies, each against the real server (uvicorn,
httptools, :class:`~failover.server.serving.GuardedHttpTools`). The slow-client tests run a
server with short :class:`~failover.server.serving.ConnectionLimits` and assert bounds, never
exact times.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http.client
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from failover import Gateway
from failover.config import config_from_dict
from failover.mock_upstream import MockUpstream
from failover.server import GatewayApp, uvicorn_config
from failover.server.auth import Authenticator
from failover.server.connection import ConnectionLimits, GuardedHttpTools
from failover.server.info import is_request_id
from failover.server.serving import bind_socket
from tests.observe.conftest import postgres_dsn  # noqa: F401 (a fixture, used by name)
from tests.server.helpers import (
    ADMIN_KEY,
    CLIENT_KEY,
    MESSAGES,
    UPSTREAM_KEY,
    QuietServer,
    gateway_config,
    serve_process,
    wait_for,
    write_config,
)

Mocks = tuple[MockUpstream, MockUpstream]

SHORT = ConnectionLimits(head_timeout=1.0, body_timeout=1.0)
"""The limits of the slow-client tests: a slow client is cut after about a second."""
PATIENT = ConnectionLimits(head_timeout=2.5, body_timeout=2.5)
"""The limits where other clients are timed while slow ones hang on: time for a loaded machine."""
BOUND = 8.0
"""Seconds within which a slow client must have been cut under SHORT or PATIENT (wide)."""
AUTH = b"authorization: Bearer " + CLIENT_KEY.encode()
CHAT = b"/v1/chat/completions"
VALID = json.dumps({"model": "intent", "messages": MESSAGES}).encode()


# -- the server and a raw client -------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer as read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The OpenAI-shaped error object of the body (asserted to be one)."""
        assert self.headers["content-type"] == "application/json", self
        payload = json.loads(self.body)
        assert set(payload) == {"error"}, payload
        assert set(payload["error"]) == {"message", "type", "code", "param"}, payload
        assert payload["error"]["message"], payload
        return dict(payload["error"])


def parse_answers(data: bytes) -> list[Answer]:
    """Every answer in ``data`` (each has a Content-Length: the gateway's always do)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        pairs = (line.split(": ", 1) for line in lines[1:])
        headers = {name.lower(): value for name, value in pairs}
        size = int(headers["content-length"])
        found.append(Answer(int(lines[0].split()[1]), headers, rest[:size]))
        data = rest[size:]
    return found


def request(
    path: bytes = b"/v1/models",
    *lines: bytes,
    method: bytes = b"GET",
    body: bytes = b"",
    close: bool = True,
) -> bytes:
    """An HTTP/1.1 request with ``lines`` as its headers (and Content-Length for ``body``)."""
    head = [method + b" " + path + b" HTTP/1.1", b"host: gateway", *lines]
    if body:
        head.append(b"content-type: application/json")
        head.append(b"content-length: %d" % len(body))
    if close:
        head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def exchange(port: int, data: bytes, *, seconds: float = 10.0) -> list[Answer]:
    """Send ``data``, read until the server closes; the answers it gave."""
    return parse_answers(await _raw(port, data, seconds))


async def _raw(port: int, data: bytes, seconds: float = 10.0) -> bytes:
    """Send ``data``, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), seconds)
    finally:
        writer.close()


async def one(port: int, data: bytes) -> Answer:
    """The single answer to ``data``."""
    answers = await exchange(port, data)
    assert len(answers) == 1, answers
    return answers[0]


async def models_answer(port: int) -> float:
    """GET /v1/models on a fresh connection must be 200; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await one(port, request(b"/v1/models", AUTH))
    assert answer.status == 200
    return loop.time() - started


@contextlib.asynccontextmanager
async def guarded(
    config: dict[str, Any], limits: ConnectionLimits = SHORT
) -> AsyncIterator[tuple[int, GatewayApp]]:
    """The gateway served on a free loopback port with ``limits``; its port and app."""
    app = GatewayApp(Gateway(config_from_dict(config, env={})))
    sock = bind_socket("127.0.0.1", 0)
    server = QuietServer(uvicorn_config(app, drain_seconds=1, limits=limits))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        assert await wait_for(lambda: server.started or task.done(), 10)
        assert server.started, "the server did not start"
        yield sock.getsockname()[1], app
    finally:
        server.should_exit = True
        await task


async def cut_after(reader: asyncio.StreamReader, started: float) -> tuple[float, list[Answer]]:
    """Wait (at most BOUND + 2 s) for the server to close; when it did, and what it said."""
    data = await asyncio.wait_for(reader.read(), BOUND + 2)
    return asyncio.get_running_loop().time() - started, parse_answers(data)


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.1) -> None:
    """Send ``data`` a byte at a time, until it is sent or the server closed."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


# -- 1. bodies ----------------------------------------------------------------------------------


async def test_oversized_bodies_are_413_and_the_server_stays_up(mocks: Mocks) -> None:
    """A body over max_body_bytes, declared or sent, is 413 and closed; the next one is served."""
    main, fallback = mocks
    config = gateway_config(main, fallback, server={"max_body_bytes": 4096})
    async with guarded(config) as (port, _):
        declared = request(CHAT, AUTH, b"content-length: 1000000000", method=b"POST")
        sent = request(CHAT, AUTH, method=b"POST", body=b'{"model": "' + b"a" * 8000 + b'"}')
        for data in (declared, sent):
            answer = await one(port, data)  # the one answer, then the server closed
            assert (answer.status, answer.error()["code"]) == (413, "request_too_large")
            assert answer.headers["connection"] == "close"
            await models_answer(port)
        # A chunked body growing past the limit: refused once over it, not read to its end.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(CHAT, AUTH, b"transfer-encoding: chunked", method=b"POST"))
        answered = asyncio.create_task(reader.read())
        sent_bytes = 0
        with contextlib.suppress(ConnectionError):
            while not answered.done() and sent_bytes < 1_000_000:
                writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
                await writer.drain()
                sent_bytes += 1024
                await asyncio.sleep(0.002)
        answer = parse_answers(await asyncio.wait_for(answered, BOUND))[0]
        writer.close()
        assert (answer.status, answer.error()["code"]) == (413, "request_too_large")
        assert sent_bytes < 100_000
        await models_answer(port)
    assert main.stats.requests == 0


async def test_bodies_that_lie_about_their_length(mocks: Mocks) -> None:
    """Shorter than its Content-Length: 408 once body_timeout passed; longer: the body is cut
    there and the excess is no HTTP; either way a clean error, a closed connection, no 500."""
    main, fallback = mocks
    async with guarded(gateway_config(main, fallback)) as (port, _):
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = loop.time()
        writer.write(request(CHAT, AUTH, b"content-length: 500", method=b"POST") + VALID)
        took, answers = await cut_after(reader, started)
        writer.close()
        assert [a.status for a in answers] == [408]
        assert answers[0].error()["code"] == "request_timeout"
        assert SHORT.body_timeout * 0.5 < took < BOUND

        # Content-Length 5: the body is '{"mod' (400 invalid JSON), and the rest no HTTP: the
        # connection is closed once that answer went out.
        lying = request(CHAT, AUTH, b"content-length: 5", method=b"POST", close=False) + VALID
        answers = await exchange(port, lying)
        assert [(a.status, a.error()["code"]) for a in answers] == [(400, "invalid_json")]
        # The same garbage alone, with nothing answered before it, is answered 400 itself.
        answer = await one(port, VALID[5:])
        assert (answer.status, answer.error()["code"]) == (400, "invalid_http")
        await models_answer(port)
    assert main.stats.requests == 0


# -- 2. heads -----------------------------------------------------------------------------------

HUGE_HEADER = b"x-padding: " + b"a" * 100_000
MANY_HEADERS = tuple(b"x-h%d: %d" % (n, n) for n in range(1000))


async def test_oversized_heads_are_refused(mocks: Mocks) -> None:
    """A 100 KB header, 1,000 headers or a 100 KB URL: 431 or 414, closed; then all is well."""
    main, fallback = mocks
    async with guarded(gateway_config(main, fallback)) as (port, _):
        cases = [
            (request(b"/v1/models", AUTH, HUGE_HEADER), 431),
            (request(b"/v1/models", AUTH, *MANY_HEADERS), 431),
            (request(CHAT, AUTH, *MANY_HEADERS, method=b"POST", body=VALID), 431),
            (request(b"/v1/requests/" + b"a" * 100_000, AUTH), 414),
        ]
        for data, status in cases:
            answer = await one(port, data)
            assert answer.status == status
            assert answer.error()["type"] == "invalid_request_error"
            assert answer.headers["connection"] == "close"
            await models_answer(port)
        # Within the limits: 90 headers of 500 bytes are served.
        normal = tuple(b"x-h%d: %s" % (n, b"v" * 500) for n in range(90))
        assert (await one(port, request(b"/v1/models", AUTH, *normal))).status == 200
        # A head sent in pieces is measured as it comes, not once complete.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(b"/v1/models", AUTH)[:-2])
        answered = asyncio.create_task(reader.read())
        pieces = 0
        with contextlib.suppress(ConnectionError):
            while not answered.done() and pieces < 100:
                writer.write(b"x-more: " + b"b" * 4000 + b"\r\n")
                await writer.drain()
                pieces += 1
                await asyncio.sleep(0.01)
        answers = parse_answers(await asyncio.wait_for(answered, BOUND))
        writer.close()
        assert 16 <= pieces < 30  # refused at 64 KiB, not at the end of the head
        assert [a.status for a in answers] == [431]


async def test_failover_serve_bounds_heads(mocks: Mocks, tmp_path: Path) -> None:
    """`failover serve` itself (default limits) refuses oversized heads and keeps serving."""
    main, fallback = mocks
    path = write_config(tmp_path, gateway_config(main, fallback))
    async with serve_process(path) as (process, url):
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        for head in ((HUGE_HEADER,), MANY_HEADERS):
            answer = await one(port, request(b"/v1/models", AUTH, *head))
            assert answer.status == 431
            answer.error()
        await models_answer(port)
        assert process.returncode is None


def test_default_limits_bound_every_client() -> None:
    """By default a slow client is cut within 30 s, and the server runs the guarded protocol."""
    limits = ConnectionLimits()
    assert limits.head_timeout + limits.body_timeout <= 30
    assert limits.max_head_bytes < 100_000  # the 100 KB header below is refused
    assert limits.max_headers < 1_000
    config = uvicorn_config(object(), drain_seconds=1)  # type: ignore[arg-type]
    assert config.http is GuardedHttpTools
    bounded = uvicorn_config(object(), drain_seconds=1, limits=SHORT)  # type: ignore[arg-type]
    assert isinstance(bounded.http, type)
    assert issubclass(bounded.http, GuardedHttpTools)
    assert bounded.http.limits == SHORT


# -- 3. slow clients ----------------------------------------------------------------------------


async def test_slow_heads_are_cut_while_others_are_served(mocks: Mocks) -> None:
    """Heads sent a byte at a time (and a kept-alive connection fed line ends) are cut within
    the bound; meanwhile other clients are answered at once."""
    main, fallback = mocks
    async with guarded(gateway_config(main, fallback), PATIENT) as (port, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        slow = []
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            slow.append((reader, writer, asyncio.create_task(trickle(writer, request() * 10))))
        # Kept alive after a served request, then fed '\r\n' forever: no keep-alive forever.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(b"/v1/models", AUTH, close=False))
        await reader.readuntil(b'"object":"list"')
        slow.append((reader, writer, asyncio.create_task(trickle(writer, b"\r\n" * 200))))
        latencies = [await models_answer(port) for _ in range(5)]
        cuts = [await cut_after(reader, started) for reader, _, _ in slow]
        for _, writer, task in slow:
            task.cancel()
            writer.close()
    for took, answers in cuts:
        assert PATIENT.head_timeout * 0.5 < took < BOUND
        assert [a.status for a in answers] == [408]
    assert max(latencies) < PATIENT.head_timeout  # answered while the slow ones still hung on


async def test_slow_bodies_are_cut(mocks: Mocks) -> None:
    """A body trickled after its head is cut with 408; a refused client that keeps trickling
    its body is closed too, not held by the keep-alive that each byte would renew."""
    main, fallback = mocks
    async with guarded(gateway_config(main, fallback)) as (port, _):
        loop = asyncio.get_running_loop()
        heads = {
            200: request(CHAT, AUTH, b"content-length: %d" % len(VALID), method=b"POST"),
            401: request(CHAT, b"content-length: %d" % len(VALID), method=b"POST", close=False),
        }
        for status, head in heads.items():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = loop.time()
            writer.write(head)
            task = asyncio.create_task(trickle(writer, VALID))
            took, answers = await cut_after(reader, started)
            task.cancel()
            writer.close()
            assert SHORT.body_timeout * 0.5 < took < BOUND
            assert [a.status for a in answers] == [408 if status == 200 else 401]
            answers[0].error()
        await models_answer(port)
    assert main.stats.requests == 0


async def test_idle_connections_do_not_block_new_clients(mocks: Mocks) -> None:
    """200 connections, half silent and half with a partial head: a new client is answered at
    once, and every one of the 200 is closed within the bound."""
    main, fallback = mocks
    async with guarded(gateway_config(main, fallback), PATIENT) as (port, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        idle = []
        for n in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if n % 2:
                writer.write(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n")
            idle.append((reader, writer))
        assert await models_answer(port) < PATIENT.head_timeout  # while all 200 hung on
        cuts = await asyncio.gather(*(cut_after(reader, started) for reader, _ in idle))
        for _, writer in idle:
            writer.close()
    assert all(took < BOUND for took, _ in cuts)
    assert [answers for _, answers in cuts[0::2]] == [[]] * 100  # silent: closed silently
    assert {answers[0].status for _, answers in cuts[1::2]} == {408}


# -- 4. auth ------------------------------------------------------------------------------------

KEY = CLIENT_KEY.encode()
BAD_KEYS: list[tuple[bytes, ...]] = [
    (),
    (b"authorization: Bearer sk-wrong",),
    (b"authorization: Bearer " + KEY[:-1],),
    (b"authorization: Bearer " + KEY + b"x",),
    (b"authorization: Bearer " + KEY + b" " + KEY,),
    (b"authorization: Basic " + KEY,),
    (b"authorization: Token " + KEY,),
    (b"authorization: " + KEY,),
    (b"authorization: Bearer\t" + KEY,),
    (b"authorization: Bearer",),
    (b"authorization: Bearer ",),
    (b"authorization:",),
    (b"authorization: Bearer " + b"k" * 16_000,),
    (b"authorization: Bearer " + KEY + b"\xe9",),
    (b"authorization: Bearer \xff\xfe\x80",),
    (b"x-api-key: Bearer " + KEY,),
    (b"proxy-authorization: Bearer " + KEY,),
    (b"cookie: api_key=" + KEY,),
    (b"x-auth-token: " + KEY,),
    (b"authorization: Bearer sk-wrong", b"x-api-key: " + KEY),  # Authorization wins
]


async def test_auth_bypass_attempts_are_401(mocks: Mocks) -> None:
    """Missing, wrong, mis-schemed, misplaced, huge and non-ASCII keys: 401 without any key in
    the answer; the key in the query string or the body is no key; never a 500."""
    main, fallback = mocks
    async with guarded(gateway_config(main, fallback)) as (port, _):
        cases = [request(b"/v1/models", *lines) for lines in BAD_KEYS]
        cases += [
            request(b"/v1/models?api_key=" + KEY + b"&key=" + KEY),
            request(CHAT, method=b"POST", body=VALID[:-1] + b', "api_key": "' + KEY + b'"}'),
            request(b"/v1/status", b"authorization: Bearer sk-wrong"),
            request(b"/metrics", b"authorization: Bearer sk-wrong"),
            request(b"/v1/requests/req_0", b"authorization: Bearer sk-wrong"),
            # Unauthenticated, a huge declared body is not even waited for.
            request(CHAT, b"content-length: 1000000000", method=b"POST"),
        ]
        for data in cases:
            answer = await one(port, data)
            assert answer.status == 401, data[:80]
            assert answer.error()["code"] == "invalid_api_key"
            assert answer.headers["www-authenticate"] == "Bearer"
            for secret in (KEY, b"sk-wrong", b"kkkk", ADMIN_KEY.encode(), UPSTREAM_KEY.encode()):
                assert secret not in answer.body
        # A control byte in a header is not HTTP: 400 from the parser, clean as well.
        answer = await one(port, request(b"/v1/models", b"authorization: Bearer \x01" + KEY))
        assert (answer.status, answer.error()["code"]) == (400, "invalid_http")
        # The scheme is case-insensitive and spaces around the key do not matter (RFC 9110).
        for line in (b"authorization: bearer " + KEY, b"authorization:Bearer   " + KEY + b"  "):
            assert (await one(port, request(b"/v1/models", line))).status == 200
    assert main.stats.requests == 0


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """By construction: every configured key's digest is compared with hmac.compare_digest,
    all of them whatever matched, and all of equal length, so time tells nothing."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = [SecretStr(f"sk-key-{n}") for n in range(5)]
    auth = Authenticator(keys, SecretStr("sk-admin"))
    for presented in (b"sk-key-0", b"sk-key-4", b"sk-admin", b"sk-key-", b"x" * 10_000):
        compared.clear()
        auth.identify(presented)
        assert compared == [(32, 32)] * 6, presented


# -- 5. records -----------------------------------------------------------------------------------

HOSTILE_IDS = [
    b"../../etc/passwd",
    b"..%2f..%2fetc%2fpasswd",
    b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"%2e%2e",
    b"..",
    b"%5c..%5c..%5cwindows%5cwin.ini",
    b"..\\..\\etc\\passwd",
    b"a" * 129,
    b"a" * 5000,
    b"'%20OR%201=1%20--",
    b"'%20OR%20'1'='1",
    b"req_x';DROP%20TABLE%20requests;--",
    b"%25",
    b"%",
    b"*",
    b"req_%",
    b"%E2%98%83",
    b"%ff%fe",
    b"%ed%a0%80",
    b"req_%0d%0aX-Injected:%201",
    b"req_x?id=1",
    b"req_x#fragment",
]
NUL_IDS = [b"%00", b"req_%00"]


def _records_config(mocks: Mocks, store: str) -> dict[str, Any]:
    main, fallback = mocks
    config = gateway_config(main, fallback, server={"api_keys": [CLIENT_KEY, "sk-other-0004"]})
    config["store"] = {"url": store}
    return config


async def _made_request(port: int) -> str:
    answer = await one(port, request(CHAT, AUTH, method=b"POST", body=VALID))
    assert answer.status == 200
    return answer.headers["x-request-id"]


async def _assert_no_record(port: int, ids: list[bytes], record_id: str) -> None:
    admin = b"authorization: Bearer " + ADMIN_KEY.encode()
    for hostile in ids:
        answer = await one(port, request(b"/v1/requests/" + hostile, admin))
        assert answer.status in (400, 404), hostile[:40]
        answer.error()
        assert record_id.encode() not in answer.body
        assert "x-injected" not in answer.headers


def _store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'requests.db'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def record_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The request log on SQLite in tmp_path, then on the real PostgreSQL (own schema)."""
    return _store_url(request, tmp_path)


async def test_hostile_record_ids(mocks: Mocks, record_store: str) -> None:
    """Traversal, encodings, SQL, very long and odd ids: 404 or 400, clean, and no record."""
    async with guarded(_records_config(mocks, record_store)) as (port, _):
        record_id = await _made_request(port)
        await _assert_no_record(port, HOSTILE_IDS, record_id)
        admin = b"authorization: Bearer " + ADMIN_KEY.encode()
        answer = await one(port, request(b"/v1/requests/" + record_id.encode(), admin))
        assert json.loads(answer.body)["request_id"] == record_id  # the store still answers


async def test_nul_in_record_id_is_404(mocks: Mocks, record_store: str) -> None:
    """A NUL in the id is no record (404), not a store failure to retry (503: PostgreSQL
    refuses a NUL in a query)."""
    async with guarded(_records_config(mocks, record_store)) as (port, _):
        await _assert_no_record(port, NUL_IDS, await _made_request(port))


def test_is_request_id() -> None:
    """A record id is 1 to 128 printable characters without '/'."""
    assert is_request_id("req_0123456789abcdef01234567")
    assert is_request_id("mine-7 ' OR 1=1 --")
    for bad in ("", "a/b", "../x", "req_\x00", "req_\r\nx", "a" * 129, "\ud800"):
        assert not is_request_id(bad), bad


async def test_another_clients_record_looks_like_none(mocks: Mocks, tmp_path: Path) -> None:
    """Another client's record is 404 with the very answer of an id that never existed (ids are
    no oracle), by any header and method; the admin reads it."""
    config = _records_config(mocks, f"sqlite:///{tmp_path / 'requests.db'}")
    async with guarded(config) as (port, _):
        record_id = (await _made_request(port)).encode()
        other = b"sk-other-0004"
        path = b"/v1/requests/" + record_id
        never = await one(port, request(b"/v1/requests/req_" + b"0" * 24, AUTH))
        for line in (b"authorization: Bearer " + other, b"x-api-key: " + other):
            answer = await one(port, request(path, line))
            assert (answer.status, answer.body) == (404, never.body)
            head = await _raw(port, request(path, line, method=b"HEAD"))
            assert head.startswith(b"HTTP/1.1 404 ")
            assert (await one(port, request(path.upper(), line))).status == 404
        mine = await one(port, request(path, AUTH))
        admin = await one(port, request(path, b"x-api-key: " + ADMIN_KEY.encode()))
    assert never.status == 404
    assert mine.status == admin.status == 200
    assert json.loads(mine.body) == json.loads(admin.body)


# -- 6. fuzzing -----------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_TEXT = st.text(max_size=30)
_CHAT_LIKE = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["intent", "intent", "main", "fallback", "nope"]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system"]), "content": _TEXT},
                optional={"name": _TEXT},
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "stream": st.booleans(),
        "max_tokens": st.integers(-5, 10**6),
        "temperature": st.floats(-1, 3),
        "top_p": st.floats(-1, 2),
        "n": st.integers(-1, 3),
        "stop": _TEXT | st.lists(_TEXT, max_size=5),
        "seed": st.integers(),
        "user": _TEXT,
        "metadata": _JSON,
    },
)
"""Chat requests, valid or nearly: they reach validation's depths, and the upstream."""
_PERTURBED = st.tuples(
    _CHAT_LIKE,
    st.sampled_from(["model", "messages", "stream", "max_tokens", "temperature", "tools", "n"]),
    _JSON,
).map(lambda case: {**case[0], case[1]: case[2]})
"""A chat request with one field replaced by any JSON at all."""
_BODIES = st.one_of(
    st.binary(max_size=512),
    _JSON.map(lambda value: json.dumps(value).encode()),
    _CHAT_LIKE.map(lambda value: json.dumps(value).encode()),
    _PERTURBED.map(lambda value: json.dumps(value).encode()),
)


def _post(port: int, body: bytes) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
        connection.request("POST", CHAT.decode(), body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def _fuzz(port: int, seen: list[int]) -> Callable[[], None]:
    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(body=_BODIES)
    def run(body: bytes) -> None:
        status, content_type, payload = _post(port, body)
        seen.append(status)
        assert status < 500, (body, payload)
        if status != 200:
            assert content_type == "application/json", (body, payload)
            error = json.loads(payload)["error"]
            assert set(error) == {"message", "type", "code", "param"}
        elif content_type == "application/json":
            assert json.loads(payload)["choices"]
        else:
            assert payload.rstrip().endswith(b"data: [DONE]"), payload

    return run


async def test_fuzzed_bodies_never_500(mocks: Mocks) -> None:
    """Random bytes, random JSON and chat-shaped JSON with random values: below 500, always a
    JSON error (or a completion), and the server serves on."""
    main, fallback = mocks
    seen: list[int] = []
    async with guarded(gateway_config(main, fallback)) as (port, _):
        await asyncio.to_thread(_fuzz(port, seen))
        await models_answer(port)
    assert len(seen) >= 100
    assert {200, 400, 404} <= set(seen)  # refused, unknown model, and served: every depth
    assert main.stats.requests + fallback.stats.requests > 0
