"""The chaos soak: the real gateway over loopback HTTP while its providers fail in turn.

    .venv/bin/python bench/soak.py --short                      # ~50 s, run by tests/bench
    .venv/bin/python bench/soak.py --seconds 600 --rate 40      # the long run of BENCHMARKS.md
    .venv/bin/python bench/soak.py --seconds 600 --serve        # the gateway in its own process
    .venv/bin/python bench/soak.py --seconds 600 --serve --hostile   # and hostile upstreams
    .venv/bin/python bench/soak.py --seconds 300 --tracemalloc  # where in-process memory grows

The gateway (``failover.server.serving``: uvicorn and the app in this process; with ``--serve``,
``failover serve --config F`` in a subprocess) fronts two in-process
:class:`~failover.mock_upstream.MockUpstream` providers, ``a`` and ``b``, on 127.0.0.1. Their
faults follow a cycle (48 s in the short run, 60 s in the long one, repeated):

- ``a``: healthy, then 50% errors (500/503), then hanging, then a 429 storm (90%, Retry-After
  1 s), then healthy again;
- ``b``: healthy, except a hang that overlaps ``a``'s, so that for a while nobody answers.

Two routes over ``[a, b]``: ``hedged`` (``hedge_after``, a ``default_response``, losers finish in
the background) and ``sequential`` (no default). Each deployment's ``timeout`` is below the
deadline divided by the attempts a sequential request can make. Requests arrive at ``--rate`` per
second (an open loop), half of them streamed, and some clients leave after a random short delay.
Each request carries its own ``x-request-id`` (``soak-N``), which the request log keeps.

``--hostile`` (with ``--serve``: the memory measured must be the gateway's alone) adds providers
that attack the gateway for the whole run, each its own mock (see
:mod:`failover.mock_upstream.hostile`): ``huge`` (a valid answer of ``--huge-mb`` MB),
``lying`` (Content-Length 10 GB, sent for ever), ``chunked`` (a chunked body with no end),
``deltas`` (a stream of empty deltas that never commits), ``line`` (one SSE line that never
ends), ``drip`` (one byte every 2 s), ``silent`` (accepts, never answers), ``echo401`` and
``echo400`` (errors whose type, code and message quote the key, with a forged log line and ANSI
escapes), ``text400`` (a plain-text 400 with the key across character 1,000); and ``c``, a
provider that is always healthy. Half the requests then go to the routes of ``HOSTILE_ROUTES``:
``via-X`` is ``[X, c]`` (hedged or sequential in turn), so every request must still succeed,
from ``c``; ``via-echo400`` and ``via-text400`` must answer the provider's 400 (rule 9), and
``a-echo400`` and ``a-text400`` put the 400 behind ``a`` (its faults decide; a 400 from a second
target is logged as an alert, with the provider's message). Every deployment has its own key,
clients send a client key, the request log is on (SQLite) and so are log alerts.

Checks (the exit status is 1 when one fails):

- every request answered before its deadline plus ``MARGIN`` (a stream: its status line);
- no 5xx made by the gateway: every 5xx must be an honest upstream-failure answer, i.e. 502,
  503 or 504 with ``x-should-retry: false`` and an OpenAI error body whose ``code`` is a failure
  class (``HONEST_CODES``); a 500, any other 5xx, or one of those without the header or the body
  fails; and no stream that ends without ``[DONE]`` or an error event;
- success, not the default, for every request that arrived once some provider had been healthy
  for ``GRACE`` seconds (``recovery_seconds``, plus a probe that may still hang for a ``timeout``
  when the provider heals, plus a second break); with ``--hostile``, for every request of a
  ``via-X`` route, and the 400 for every request of ``via-echo400`` and ``via-text400``;
- upstream requests within the retry budget: ``(1 + ratio) * firsts + min_per_second * seconds``
  per route, where a first attempt is a request's first or a fallback after a failed attempt
  (a fallback is never refused by the budget), so firsts <= requests + failed upstream answers;
- short run: after draining, pending tasks and open descriptors back at their baseline (within a
  tolerance); long run: the slope of RSS, descriptors and tasks between the second and the last
  minute stays under a bound.
- ``--hostile``: no answer larger than ``ANSWER_BOUND`` (an upstream body passed through
  unbounded); the gateway's RSS under ``baseline + PEAK_MB`` throughout, back under
  ``baseline + DRAINED_MB`` once drained, and (runs of 3 minutes or more) its least-squares slope
  over minutes 2 to the end under ``RSS_SLOPE`` MB a minute; every request sent has its row in
  the request log (by its ``x-request-id``), and every id the gateway answered is a row; no key
  (a deployment's, the client's: whole, in base64, or any ``FRAGMENT`` characters of it) in any
  answer, header, row of any table, ``/metrics`` or gateway log line; no log line forged (one
  that starts with ``CRITICAL forged``) and none with a control character (ANSI escapes, CR).
  The gateway is killed, and the run stopped, if its RSS passes ``--rss-guard-mb`` (a shared
  machine must not run out of memory because the gateway has no bound).

In-process, RSS and descriptors are those of this process (gateway, mocks and the driver share
it; the driver closes its connections before the final sample); tasks exclude the driver's own.
With ``--serve`` they are the gateway process' alone (``/proc/PID/status``, ``/proc/PID/fd``), and
its tasks cannot be seen (the gateway has no endpoint for them): threads are sampled instead, and
the gateway must exit 0 within ``SHUTDOWN_BOUND`` seconds of SIGTERM. ``--tracemalloc`` (in
process only) traces allocations and prints the 15 source lines whose memory grew most between
the start of minute 2 and the end of the traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import re
import signal
import sqlite3
import string
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from failover import Gateway
from failover.errors import ErrorClass
from failover.mock_upstream import PROFILES, MockUpstream, Profile, override
from failover.server.embedded import serving

DEADLINE = 4.0
TIMEOUT = 1.0  # per attempt: a sequential request makes a, a again, then b (3 * 1 s < 4 s)
HEDGE_AFTER = 0.5
RECOVERY = 2.0
MARGIN = 0.5
GRACE = 2 * RECOVERY + TIMEOUT + 1.0
RATIO = 0.2
FLOOR = 10.0  # min_per_second
WINDOW = 10.0  # the retry budget's window_seconds (its default)
DISCONNECT_SHARE = 0.15
STREAM_SHARE = 0.5
MESSAGES = [{"role": "user", "content": "Say hello in five words"}]
# Drained means back to the baseline within these; a pool connection may outlive the run.
TASK_TOLERANCE = 3
FD_TOLERANCE = 4
# --serve: the gateway process starts within this, and exits within the other after SIGTERM
# (in-flight requests are over by then; its drain waits for none).
START_BOUND = 30.0
SHUTDOWN_BOUND = 15.0

# Fault schedule as (start, profile changes) in fractions of a cycle; the first entry is at 0.
HEALTHY: dict[str, Any] = {"error_rate": 0.0, "hang": False, "rate_limit_share": 0.0}
SCHEDULE: dict[str, list[tuple[float, str, dict[str, Any]]]] = {
    "a": [
        (0.0, "healthy", HEALTHY),
        (1 / 6, "errors", {**HEALTHY, "error_rate": 0.5, "error_status": [500, 503]}),
        (1 / 3, "hanging", {**HEALTHY, "hang": True}),
        (0.54, "429 storm", {**HEALTHY, "rate_limit_share": 0.9, "retry_after": 1}),
        (0.71, "healthy", HEALTHY),
    ],
    "b": [
        (0.0, "healthy", HEALTHY),
        (0.375, "hanging", {**HEALTHY, "hang": True}),
        (0.5, "healthy", HEALTHY),
    ],
}


# --hostile: providers that attack the gateway for the whole run (their mock's profile: healthy,
# with these changes), each behind its own deployment; and c, which is always healthy.
HOSTILE: dict[str, dict[str, Any]] = {
    "huge": {"hostile": ["huge"]},  # hostile_bytes: --huge-mb
    "lying": {"hostile": ["lying-length"]},
    "chunked": {"hostile": ["endless-chunked"]},
    "deltas": {"hostile": ["empty-deltas"]},
    "line": {"hostile": ["endless-line"]},
    "drip": {"hostile": ["drip"], "drip_interval": 2 * TIMEOUT},  # a gap past the timeout
    "silent": {"hang": True},
    "echo401": {"hostile": ["key-echo"], "error_status": [401]},
    "echo400": {"hostile": ["key-echo"]},
    "text400": {"hostile": ["key-text"]},
}
HUGE_MB = 200.0
# Route -> (targets, hedged, what its clients must get): "success" (c answers when the hostile
# first target fails), "400" (the hostile target's own 400, rule 9), "any" (a's faults decide).
HOSTILE_ROUTES: dict[str, tuple[tuple[str, ...], bool, str]] = {
    **{
        f"via-{name}": ((name, "c"), index % 2 == 0, "success")
        for index, name in enumerate(
            ("huge", "lying", "chunked", "deltas", "line", "drip", "silent", "echo401")
        )
    },
    "via-echo400": (("echo400", "c"), False, "400"),
    "via-text400": (("text400", "c"), True, "400"),
    "a-echo400": (("a", "echo400"), False, "any"),
    "a-text400": (("a", "text400"), True, "any"),
}
HOSTILE_SHARE = 0.5  # of the requests, spread evenly over HOSTILE_ROUTES
# What an honest upstream-failure answer may name as its error.code (SPEC, HTTP API).
HONEST_CODES = frozenset(
    {*(c.value for c in ErrorClass), "circuit_open", "deadline_exceeded", "upstream_error"}
)
HONEST_STATUSES = frozenset({502, 503, 504})
# Bounds of --hostile on the gateway's RSS, in MB: over its baseline at any time, once drained,
# and the slope from minute 2 on. The guard kills a gateway that has no bound at all.
PEAK_MB = 512.0
DRAINED_MB = 128.0
RSS_SLOPE = 0.5
RSS_GUARD_MB = 3072.0
GUARD_EVERY = 0.2
ANSWER_BOUND = 8 * 2**20  # an answer larger than this passed an upstream's body through
KEEP = 2**20  # of each answer, the bytes kept (parsed and searched); and the last TAIL
TAIL = 64 * 1024
FRAGMENT = 12  # a key's piece this long, anywhere, is a leak (a cut before the redaction)
LOG_LINE_BOUND = 64 * 1024  # a longer gateway log line is kept cut, with its length
LOUD_SHOWN = 12  # --hostile prints the gateway's first warning, error and critical lines
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # in a log line: an escape, a CR, a NUL...


def secret_key(name: str) -> str:
    """Deployment (or client) ``name``'s key: the name, then 28 letters and digits, the same in
    every run; no known key shape, so only redaction by value can catch it."""
    rng = random.Random(f"soak-key-{name}")
    alphabet = string.ascii_letters + string.digits
    return f"{name}-" + "".join(rng.choice(alphabet) for _ in range(28))


def route_common(targets: Iterable[str]) -> dict[str, Any]:
    """What every route of the soak shares: the deadline, retries, the retry budget."""
    return {
        "targets": list(targets),
        "deadline": DEADLINE,
        "retry": {"backoff": 0.05, "max_backoff": 0.2, "jitter": True},
        "retry_budget": {"ratio": RATIO, "min_per_second": FLOOR},
    }


def deployment(url: str, key: str) -> dict[str, Any]:
    """An openai-compatible deployment of the mock at ``url``."""
    return {
        "provider": "openai-compatible",
        "model": "mock-model",
        "api_base": url,
        "api_key": key,
        "timeout": TIMEOUT,
        "max_retries": 1,
    }


def config(urls: Mapping[str, str]) -> dict[str, Any]:
    """The gateway's config over providers at ``urls`` (name -> base URL): two deployments, a
    hedged and a sequential route."""
    deployments = {name: deployment(url, "soak-provider-key") for name, url in urls.items()}
    common = route_common(urls)
    return {
        "store": {"url": "none"},
        "alerts": [],
        "health": {
            "failure_threshold": 5,
            "recovery_seconds": RECOVERY,
            "max_recovery_seconds": RECOVERY,
            "rate_limit_cooldown": 1,
            "check_on_startup": False,
        },
        "deployments": deployments,
        "routes": {
            "hedged": {
                **common,
                "hedge_after": HEDGE_AFTER,
                "default_response": "SOAK_DEFAULT",
                "finish_losers": 0.5,
            },
            "sequential": common,
        },
    }


def hostile_config(urls: Mapping[str, str], keys: Mapping[str, str], store: Path) -> dict[str, Any]:
    """The soak's config with the hostile providers and ``c`` added (``urls``: every mock's),
    their routes, a key per deployment and for clients (``keys``), the request log at ``store``
    and log alerts."""
    base = config({name: urls[name] for name in SCHEDULE})
    deployments = {name: deployment(urls[name], keys[name]) for name in urls}
    routes = dict(base["routes"])
    for name, (targets, hedged, _) in HOSTILE_ROUTES.items():
        route = route_common(targets)
        if hedged:
            route.update(hedge_after=HEDGE_AFTER, finish_losers=0.5)
        routes[name] = route
    return {
        **base,
        "deployments": deployments,
        "routes": routes,
        "server": {"api_keys": [keys["client"]]},
        "store": {"url": f"sqlite:///{store}"},
        "alerts": [{"kind": "log"}],
    }


def hostile_profile(name: str, huge_bytes: int) -> Profile:
    """The mock profile of hostile provider ``name``."""
    changes = dict(HOSTILE[name])
    if name == "huge":
        changes["hostile_bytes"] = huge_bytes
    return override(PROFILES["healthy"], changes)


@dataclass(slots=True)
class Result:
    """One request as the client saw it."""

    arrived: float  # seconds since the run began
    route: str
    stream: bool
    left: bool = False  # the client went away on purpose
    status: int | None = None
    seconds: float = math.nan  # to the answer (a stream: to its status line)
    ok: bool = False  # a provider's answer, complete
    degraded: bool = False
    problem: str | None = None  # a broken stream, a transport error
    ident: str = ""  # the x-request-id the client sent
    request_id: str | None = None  # the x-request-id the gateway answered
    code: str | None = None  # error.code of an error answer
    should_retry: str | None = None  # its x-should-retry header
    size: int = 0  # bytes of the answer's body
    leaks: tuple[str, ...] = ()  # the keys found in what the client read


@dataclass
class Sample:
    """Resource use at one moment (of this process, or of the gateway's with --serve)."""

    t: float
    rss_mb: float
    fds: int
    tasks: int | None  # None: not visible (the gateway in its own process)
    net_mb: float  # RSS less the driver's own records of the requests, which grow by design
    threads: int = 0


@dataclass
class Target:
    """The gateway under soak: its base URL (``/v1`` included) and, with --serve, its process."""

    url: str
    pid: int | None = None  # None: this process
    log: list[str] = field(default_factory=list)  # the gateway process' stderr lines
    exit_code: int | None = None
    stop_seconds: float = math.nan  # SIGTERM to exit


@dataclass
class Run:
    """Everything a soak observed."""

    seconds: float
    cycle: float
    results: list[Result] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    driver: set[asyncio.Task[Any]] = field(default_factory=set)
    pid: int | None = None  # the process sampled; None: this one
    killed: str | None = None  # why the RSS guard killed the gateway, if it did
    peak_mb: float = 0.0  # the highest RSS the guard saw


def phase(name: str, t: float, cycle: float) -> tuple[str, dict[str, Any]]:
    """The phase provider ``name`` is in at ``t`` seconds."""
    position = (t % cycle) / cycle
    current = SCHEDULE[name][0]
    for entry in SCHEDULE[name]:
        if entry[0] <= position:
            current = entry
    return current[1], current[2]


def healthy_throughout(name: str, low: float, high: float, cycle: float) -> bool:
    """Whether provider ``name`` is healthy at every moment of [low, high] (before 0: it is)."""
    steps = math.ceil((high - low) / 0.05)
    return all(
        phase(name, t, cycle)[0] == "healthy"
        for t in (low + (high - low) * i / steps for i in range(steps + 1))
        if t >= 0
    )


def must_succeed(t: float, cycle: float) -> bool:
    """Whether some provider had been healthy for GRACE seconds when a request arrived at t
    and stays healthy until the request's deadline (its last attempt may start that late)."""
    return any(healthy_throughout(name, t - GRACE, t + DEADLINE, cycle) for name in SCHEDULE)


def proc_status(pid: int | None) -> dict[str, str]:
    """``/proc/PID/status`` (``self`` for None) as field -> value."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid or 'self'}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def rss_of(pid: int | None) -> float:
    """The RSS of process ``pid`` (None: this one) in MB; NaN once it is gone."""
    try:
        return int(proc_status(pid)["VmRSS"].split()[0]) / 1024
    except (OSError, KeyError):  # exited (a zombie has no VmRSS), or reaped
        return math.nan


def sample(run: Run, began: float) -> Sample:
    """RSS, open descriptors, threads and pending tasks (the driver's own left out) now."""
    t = time.monotonic() - began
    try:
        status = proc_status(run.pid)
        rss_mb = int(status["VmRSS"].split()[0]) / 1024
        fds = len(os.listdir(f"/proc/{run.pid or 'self'}/fd"))
    except (OSError, KeyError):  # the gateway process is gone (the RSS guard killed it)
        return Sample(t, math.nan, 0, None, math.nan, 0)
    if run.pid is not None:
        return Sample(t, rss_mb, fds, None, rss_mb, int(status["Threads"]))
    tasks = len(asyncio.all_tasks() - run.driver)
    records_mb = len(run.results) * record_bytes() / 2**20
    return Sample(t, rss_mb, fds, tasks, rss_mb - records_mb, int(status["Threads"]))


def record_bytes() -> int:
    """The memory one :class:`Result` holds: the object, its two floats, its list slot."""
    return sys.getsizeof(Result(0.5, "hedged", False)) + 2 * sys.getsizeof(0.5) + 8


def pooled(ports: set[int]) -> int:
    """Established loopback connections whose local port is one of ``ports``: the gateway's
    idle keep-alive connections to the mocks, as the mocks see them."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) in ports:
                count += 1
    return count


class Secrets:
    """The keys of a run, and where they turn up: whole, in base64, or as any ``fragment``
    characters of one (what is left of a key that was cut before it was redacted).

    >>> secrets = Secrets({"a": "a-0123456789abcdefghij"})
    >>> sorted(secrets.find("... provided: a-0123456789ab"))
    ['a']
    >>> secrets.find("a-0123 [REDACTED]")
    set()
    """

    def __init__(self, keys: Mapping[str, str], fragment: int = FRAGMENT) -> None:
        self.keys = dict(keys)
        self._fragment = fragment
        self._pieces = {
            key[i : i + fragment]: name
            for name, key in keys.items()
            for i in range(len(key) - fragment + 1)
        }
        self._encoded = [
            (form, name)
            for name, key in keys.items()
            for raw in (key.encode(), f"Bearer {key}".encode())
            for form in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode())
        ]
        self._runs = re.compile(rf"[A-Za-z0-9_\-]{{{fragment},}}")

    def find(self, text: str) -> set[str]:
        """The names of the keys ``text`` holds (or a piece of)."""
        found = {name for form, name in self._encoded if form in text}
        width = self._fragment
        for run in self._runs.findall(text):
            for i in range(len(run) - width + 1):
                name = self._pieces.get(run[i : i + width])
                if name is not None:
                    found.add(name)
        return found


async def read_answer(response: aiohttp.ClientResponse) -> tuple[bytes, bytes, int]:
    """An answer's first ``KEEP`` bytes, its last ``TAIL`` bytes and its size: a huge answer
    is counted, not held."""
    head = bytearray()
    tail = b""
    size = 0
    async for data in response.content.iter_any():
        size += len(data)
        if len(head) < KEEP:
            head += data[: KEEP - len(head)]
        tail = (tail + data)[-TAIL:]
    return bytes(head), tail, size


async def one(
    session: aiohttp.ClientSession,
    url: str,
    result: Result,
    bodies: list[str] | None,
    secrets: Secrets | None = None,
) -> None:
    """Send one request and fill in ``result``; append what came back to ``bodies``; look for
    ``secrets`` in it."""
    body: dict[str, Any] = {"model": result.route, "messages": MESSAGES}
    if result.stream:
        body["stream"] = True
    start = time.monotonic()
    try:
        async with session.post(
            f"{url}/chat/completions", json=body, headers={"x-request-id": result.ident}
        ) as response:
            result.status = response.status
            result.request_id = response.headers.get("x-request-id")
            result.should_retry = response.headers.get("x-should-retry")
            if result.stream and response.status == 200:
                result.seconds = time.monotonic() - start
            head, tail, result.size = await read_answer(response)
            if math.isnan(result.seconds):
                result.seconds = time.monotonic() - start
            text = head.decode(errors="replace")
            whole = text if result.size <= len(head) else text + tail.decode(errors="replace")
            if bodies is not None:
                bodies.append(f"{response.status} {dict(response.headers)}\n{text}")
            if secrets is not None:
                leaks = secrets.find(f"{dict(response.headers)}\n{whole}")
                result.leaks = tuple(sorted(leaks))
            result.degraded = response.headers.get("x-failover-degraded") == "true"
            if result.stream and response.status == 200:
                end = whole[-TAIL:]
                if "data: [DONE]" not in end and '"error"' not in end:
                    result.problem = "stream ended without [DONE] or an error event"
                result.ok = '"error"' not in whole and "data: [DONE]" in end
            else:
                payload = json.loads(text) if text and result.size <= len(head) else None
                answered = isinstance(payload, dict) and bool(payload.get("choices"))
                result.ok = response.status == 200 and answered
                error = payload.get("error") if isinstance(payload, dict) else None
                if isinstance(error, dict) and isinstance(error.get("code"), str):
                    result.code = error["code"]
            result.ok = result.ok and not result.degraded
    except (aiohttp.ClientError, ValueError) as error:
        if math.isnan(result.seconds):
            result.seconds = time.monotonic() - start
        result.problem = f"{type(error).__name__}: {error}"


async def client(
    session: aiohttp.ClientSession,
    url: str,
    result: Result,
    rng: random.Random,
    run: Run,
    bodies: list[str] | None,
    secrets: Secrets | None = None,
) -> None:
    """One client: it waits for its answer, or leaves after a short random delay."""
    if not result.left:
        await one(session, url, result, bodies, secrets)
        return
    task = asyncio.create_task(one(session, url, result, bodies, secrets))
    run.driver.add(task)
    task.add_done_callback(run.driver.discard)
    await asyncio.sleep(rng.uniform(0.05, 1.5))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def faults(mocks: Mapping[str, MockUpstream], run: Run, began: float) -> None:
    """Switch each scheduled mock's profile when the schedule says so (the others keep theirs)."""
    current: dict[str, str] = {}
    while True:
        t = time.monotonic() - began
        for name in SCHEDULE:
            label, changes = phase(name, t, run.cycle)
            if current.get(name) != label:
                mocks[name].set_profile("healthy", **changes)
                current[name] = label
        await asyncio.sleep(0.05)


async def guard(run: Run, limit_mb: float, began: float) -> None:
    """Kill the gateway process when its RSS passes ``limit_mb``, which stops the run: a
    gateway without a bound must not take a shared machine's memory."""
    assert run.pid is not None
    while True:
        rss = rss_of(run.pid)
        run.peak_mb = max(run.peak_mb, rss) if not math.isnan(rss) else run.peak_mb
        if rss > limit_mb:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGKILL)
            t = time.monotonic() - began
            run.killed = f"gateway RSS {rss:.0f} MB at {t:.1f} s, above the guard's {limit_mb:g} MB"
            return
        await asyncio.sleep(GUARD_EVERY)


async def sampler(run: Run, began: float) -> None:
    """Sample resources once a second."""
    while True:
        run.samples.append(sample(run, began))
        await asyncio.sleep(1.0)


class MemoryTrace:
    """tracemalloc snapshots at ``at`` seconds into the traffic and at its end (in process)."""

    def __init__(self, at: float = 60.0, frames: int = 8) -> None:
        self.at = at
        self.frames = frames
        self.first: tracemalloc.Snapshot | None = None
        self.last: tracemalloc.Snapshot | None = None

    def start(self) -> None:
        tracemalloc.start(self.frames)

    async def watch(self, began: float) -> None:
        """Take the first snapshot at ``at`` seconds after ``began``."""
        await asyncio.sleep(max(0.0, began + self.at - time.monotonic()))
        self.first = tracemalloc.take_snapshot()

    def finish(self) -> None:
        """Take the last snapshot and stop tracing."""
        self.last = tracemalloc.take_snapshot()
        tracemalloc.stop()

    def report(self, top: int = 15, tracebacks: int = 5) -> list[str]:
        """The ``top`` lines whose allocations grew most, then the stacks of the first few."""
        if self.first is None or self.last is None:
            return ["tracemalloc: the run ended before the first snapshot"]
        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            tracemalloc.Filter(False, "<unknown>"),
        ]
        first, last = self.first.filter_traces(ignore), self.last.filter_traces(ignore)
        total = sum(s.size_diff for s in last.compare_to(first, "filename"))
        lines = [
            f"tracemalloc, {self.at:g} s to the end of the traffic: {total / 2**20:+.2f} MB traced",
            "| # | grew KB | count +/- | where |",
            "| --- | --- | --- | --- |",
        ]
        growth = last.compare_to(first, "lineno")[:top]
        for rank, stat in enumerate(growth, 1):
            frame = stat.traceback[0]
            lines.append(
                f"| {rank} | {stat.size_diff / 1024:+.1f} | {stat.count_diff:+d} | "
                f"{short_path(frame.filename)}:{frame.lineno} |"
            )
        for rank, stat in enumerate(last.compare_to(first, "traceback")[:tracebacks], 1):
            lines.append(f"stack {rank}: {stat.size_diff / 1024:+.1f} KB, {stat.count_diff:+d}")
            lines.extend(
                f"    {short_path(frame.filename)}:{frame.lineno}"
                for frame in reversed(stat.traceback)
            )
        return lines


def short_path(path: str) -> str:
    """A source path from its package on (``site-packages/`` and ``src/`` cut off)."""
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


@contextlib.asynccontextmanager
async def in_process(gateway_config: dict[str, Any]) -> AsyncIterator[Target]:
    """The gateway served in this process and event loop."""
    async with serving(Gateway.from_dict(gateway_config)) as server:
        yield Target(server.url)


@contextlib.asynccontextmanager
async def served(gateway_config: dict[str, Any]) -> AsyncIterator[Target]:
    """``failover serve --config F`` in a subprocess; its stderr is kept in ``Target.log``."""
    with tempfile.TemporaryDirectory(prefix="failover-soak-") as directory:
        path = Path(directory) / "gateway.yaml"
        path.write_text(json.dumps(gateway_config, indent=1))  # JSON is YAML
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "failover.cli",
            "serve",
            "--config",
            str(path),
            "--port",
            "0",
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=directory,
        )
        target = Target("", process.pid)
        reader: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(START_BOUND):
                target.url = await listening(process, target.log) + "/v1"
            reader = asyncio.create_task(read_lines(process, target.log))
            yield target
        finally:
            target.exit_code, target.stop_seconds = await stop(process)
            if reader is not None:
                await reader


async def listening(process: asyncio.subprocess.Process, log: list[str]) -> str:
    """Read the gateway's stderr up to its start line; the origin it listens on."""
    assert process.stderr is not None
    while True:
        line = (await process.stderr.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("the gateway exited before it listened:\n" + "".join(log))
        log.append(line)
        if found := re.search(r"listening on (http://\S+)", line):
            return found.group(1)


async def read_lines(process: asyncio.subprocess.Process, log: list[str]) -> None:
    """Keep the gateway's stderr lines (a full pipe would block its logging). A line longer
    than ``LOG_LINE_BOUND`` is kept cut, with its length: a log line may quote an upstream."""
    assert process.stderr is not None
    line = bytearray()
    length = 0

    def keep(piece: bytes) -> None:
        nonlocal length
        length += len(piece)
        room = LOG_LINE_BOUND - len(line)
        if room > 0:
            line.extend(piece[:room])

    def finish() -> None:
        nonlocal length
        text = line.decode(errors="replace")
        if length > len(line):
            text = text.rstrip("\n") + f" [... a line of {length} bytes]\n"
        log.append(text)
        line.clear()
        length = 0

    while data := await process.stderr.read(2**16):
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            keep(data[start : end + 1])
            finish()
            start = end + 1
        keep(data[start:])
    if line:
        finish()


async def stop(process: asyncio.subprocess.Process) -> tuple[int | None, float]:
    """SIGTERM, then wait (SIGKILL past twice the bound); the exit code and seconds taken."""
    if process.returncode is not None:
        return process.returncode, 0.0
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(2 * SHUTDOWN_BOUND):
            code = await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        return None, time.monotonic() - started
    return code, time.monotonic() - started


async def soak(
    seconds: float,
    rate: float,
    cycle: float,
    seed: int,
    *,
    serve: bool = False,
    memory: MemoryTrace | None = None,
    hostile: bool = False,
    huge_mb: float = HUGE_MB,
    guard_mb: float = RSS_GUARD_MB,
) -> tuple[Run, dict[str, Any]]:
    """Drive the gateway for ``seconds`` at ``rate`` requests per second; return what was seen.

    ``hostile`` (with ``serve``): add the hostile providers, ``c`` and their routes, keys, the
    request log and log alerts, and gather what the hostile checks read (``extra["hostile"]``).
    """
    run = Run(seconds, cycle)
    async with contextlib.AsyncExitStack() as stack:
        mocks: dict[str, MockUpstream] = {}
        for index, name in enumerate(SCHEDULE):
            mock = MockUpstream(name=name, seed=seed + index)
            mocks[name] = await stack.enter_async_context(mock)
        if not hostile:
            gateway_config = config({name: mock.url for name, mock in mocks.items()})
            extra = await drive(
                mocks, gateway_config, run, rate=rate, seed=seed, serve=serve, memory=memory
            )
            return run, extra
        mocks["c"] = await stack.enter_async_context(MockUpstream(name="c", seed=seed + 2))
        for index, name in enumerate(HOSTILE):
            profile = hostile_profile(name, round(huge_mb * 1e6))
            mock = MockUpstream(profile, name=name, seed=seed + 3 + index)
            mocks[name] = await stack.enter_async_context(mock)
        keys = {name: secret_key(name) for name in (*mocks, "client")}
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="failover-log-")))
        store = directory / "requests.db"
        gateway_config = hostile_config({n: m.url for n, m in mocks.items()}, keys, store)
        secrets = Secrets(keys)
        extra = await drive(
            mocks,
            gateway_config,
            run,
            rate=rate,
            seed=seed,
            serve=True,
            headers={"Authorization": f"Bearer {keys['client']}"},
            routes=tuple(HOSTILE_ROUTES),
            secrets=secrets,
            guard_mb=guard_mb,
        )
        extra["hostile"] = gather_hostile(store, secrets, extra["target"].log, extra["metrics"])
    return run, extra


def gather_hostile(store: Path, secrets: Secrets, log: list[str], metrics: str) -> dict[str, Any]:
    """After the gateway stopped: the request log's ids, and where keys or forged or escaped
    text turned up in its rows, its log lines and ``/metrics``."""
    rows: list[tuple[str, str | None]] = []
    row_leaks: dict[str, int] = {}
    scanned = 0
    if store.exists():
        with contextlib.closing(sqlite3.connect(store)) as db:
            rows = list(db.execute("SELECT request_id, client_request_id FROM requests"))
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    scanned += 1
                    for name in secrets.find(repr(row)):
                        row_leaks[name] = row_leaks.get(name, 0) + 1
    log_leaks = [(line, sorted(found)) for line in log if (found := secrets.find(line))]
    forged = [line for line in log if line.startswith("CRITICAL forged")]
    controls = [line for line in log if CONTROL.search(line.rstrip("\n"))]
    return {
        "rows": rows,
        "rows_scanned": scanned,
        "row_leaks": row_leaks,
        "log_leaks": log_leaks,
        "forged": forged,
        "controls": controls,
        "metrics_leaks": sorted(secrets.find(metrics)),
    }


async def drive(
    mocks: Mapping[str, MockUpstream],
    gateway_config: dict[str, Any],
    run: Run,
    *,
    rate: float,
    seed: int,
    serve: bool = False,
    headers: Mapping[str, str] | None = None,
    bodies: list[str] | None = None,
    memory: MemoryTrace | None = None,
    routes: Sequence[str] = (),
    secrets: Secrets | None = None,
    guard_mb: float | None = None,
) -> dict[str, Any]:
    """Serve ``gateway_config`` (in process, or ``serve``: in a subprocess) and drive it, with
    ``mocks`` following the fault schedule; fill in ``run`` and return the other figures.

    ``headers`` go with every request (a client key); ``bodies``, when given, receives every
    answer the clients read (status, headers and body). ``routes``: a ``HOSTILE_SHARE`` of the
    requests goes to one of these; ``secrets`` are looked for in every answer; ``guard_mb``
    (``serve`` only): the RSS past which the gateway is killed.
    """
    rng = random.Random(seed)
    me = asyncio.current_task()
    if me is not None:
        run.driver.add(me)
    if memory is not None:
        memory.start()
    ports = {mock.port for mock in mocks.values()}
    target_of = served if serve else in_process
    async with target_of(gateway_config) as target:
        run.pid = target.pid
        began = time.monotonic()
        baseline = sample(run, began)
        pending: set[asyncio.Task[None]] = set()
        helpers = [
            asyncio.create_task(faults(mocks, run, began)),
            asyncio.create_task(sampler(run, began)),
        ]
        if memory is not None:
            helpers.append(asyncio.create_task(memory.watch(began)))
        if guard_mb is not None and run.pid is not None:
            helpers.append(asyncio.create_task(guard(run, guard_mb, began)))
        run.driver.update(helpers)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=DEADLINE + 30)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers
        ) as session:
            sent = 0
            while (now := time.monotonic() - began) < run.seconds and run.killed is None:
                due = sent / rate
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                result = Result(
                    arrived=now,
                    route=rng.choice(("hedged", "sequential")),
                    stream=rng.random() < STREAM_SHARE,
                    left=rng.random() < DISCONNECT_SHARE,
                    ident=f"soak-{sent}",
                )
                if routes and rng.random() < HOSTILE_SHARE:
                    result.route = rng.choice(routes)
                run.results.append(result)
                task = asyncio.create_task(
                    client(session, target.url, result, rng, run, bodies, secrets)
                )
                run.driver.add(task)
                pending.add(task)
                task.add_done_callback(pending.discard)
                task.add_done_callback(run.driver.discard)
                sent += 1
            if pending:
                await asyncio.wait(pending)
            if memory is not None:
                memory.finish()
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        # Losers finish in the background (finish_losers) and connections close: settle.
        settle_until = time.monotonic() + TIMEOUT + 5.0
        while time.monotonic() < settle_until:
            if settled(run, baseline, mocks, sample(run, began)):
                break
            await asyncio.sleep(0.1)
        drained = sample(run, began)
        # An idle pooled connection holds a descriptor at each end (the gateway's, and the
        # mock's in this process) and a mock handler task until its keep-alive ends (30 s):
        # bounded, not a leak.
        pool = pooled(ports)
        try:
            metrics = await scrape(target.url, headers)
        except aiohttp.ClientError:  # the gateway is gone (the RSS guard killed it)
            metrics = ""
    upstream = {
        name: {
            "requests": mock.stats.paths.get("/v1/chat/completions", 0),
            "failed": sum(n for k, n in mock.stats.outcomes.items() if k != "ok"),
            "outcomes": dict(mock.stats.outcomes),
        }
        for name, mock in mocks.items()
    }
    return {
        "baseline": baseline,
        "drained": drained,
        "pool": pool,
        "fds_per_pooled": 2 if target.pid is None else 1,
        "upstream": upstream,
        "metrics": metrics,
        "target": target,
        "routes": len(gateway_config["routes"]),
    }


def settled(run: Run, baseline: Sample, mocks: Mapping[str, MockUpstream], now: Sample) -> bool:
    """No upstream request in flight, and tasks (or the gateway's descriptors) back down."""
    if any(mock.stats.in_flight for mock in mocks.values()):
        return False
    idle = pooled({mock.port for mock in mocks.values()})
    if now.tasks is not None and baseline.tasks is not None:
        return now.tasks <= baseline.tasks + idle + TASK_TOLERANCE
    return now.fds <= baseline.fds + idle + FD_TOLERANCE


async def scrape(url: str, headers: Mapping[str, str] | None) -> str:
    """The gateway's ``/metrics`` text."""
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(url.removesuffix("/v1") + "/metrics") as response,
    ):
        return await response.text()


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (NaN without values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def check(run: Run, extra: dict[str, Any], *, long: bool) -> list[str]:
    """Print the figures; return the failed checks."""
    failures: list[str] = []
    results = run.results
    stayed = [r for r in results if not r.left]
    left = len(results) - len(stayed)
    ok = [r for r in stayed if r.ok]
    degraded = [r for r in stayed if r.degraded]
    print(f"requests {len(results)} in {run.seconds:g} s: {len(stayed)} waited, {left} left early")
    print(
        f"success {len(ok)}/{len(stayed)} ({len(ok) / max(1, len(stayed)):.1%}), "
        f"default {len(degraded)}, errors {len(stayed) - len(ok) - len(degraded)}"
    )
    times = [r.seconds for r in stayed if not math.isnan(r.seconds)]
    p50, p99, worst = quantile(times, 0.5), quantile(times, 0.99), max(times, default=math.nan)
    print(f"latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms")
    statuses: dict[str, int] = {}
    for r in stayed:
        key = str(r.status) if r.status is not None else "none"
        statuses[key] = statuses.get(key, 0) + 1
    print("statuses " + ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items())))

    late = [r for r in stayed if not r.seconds <= DEADLINE + MARGIN]
    if late:
        failures.append(f"{len(late)} answers later than deadline + {MARGIN:g} s, e.g. {late[0]}")
    made = [r for r in results if made_by_gateway(r)]
    honest = [r for r in results if (r.status or 0) >= 500 and not made_by_gateway(r)]
    print(f"5xx: {len(honest)} honest upstream-failure answers, {len(made)} made by the gateway")
    if made:
        failures.append(f"{len(made)} 5xx made by the gateway (not honest), e.g. {made[0]}")
    broken = [r for r in stayed if r.problem]
    if broken:
        failures.append(f"{len(broken)} broken answers, e.g. {broken[0]}")
    expected = [r for r in stayed if expectation(r, run.cycle) == "success"]
    missed = [r for r in expected if not r.ok]
    print(f"after recovery: {len(expected) - len(missed)}/{len(expected)} succeeded")
    if missed:
        failures.append(f"{len(missed)} failed after a provider had recovered, e.g. {missed[0]}")
    refused = [r for r in stayed if expectation(r, run.cycle) == "400"]
    not_400 = [r for r in refused if r.status != 400]
    if refused:
        print(f"the provider's own 400: {len(refused) - len(not_400)}/{len(refused)}")
    if not_400:
        failures.append(f"{len(not_400)} answers other than the provider's 400, e.g. {not_400[0]}")

    upstream = extra["upstream"]
    total = sum(u["requests"] for u in upstream.values())
    failed = sum(u["failed"] for u in upstream.values())
    firsts = len(results) + failed
    # Per route and window, extras <= max(ratio * firsts, floor * window); over the run that
    # sums to at most ratio * firsts + floor * (seconds + one window), for each of two routes.
    allowed = (1 + RATIO) * firsts + FLOOR * (run.seconds + WINDOW) * extra.get("routes", 2)
    print(
        f"upstream {total} requests for {len(results)} ({total / max(1, len(results)) - 1:+.1%} "
        f"extra), {failed} failed upstream; allowed by the budget {allowed:.0f}"
    )
    if total > allowed:
        failures.append(f"upstream load {total} above the retry budget's {allowed:.0f}")
    failures.extend(drain(run, extra))
    if long:
        minutes(run)
        failures.extend(slopes(run))
    if "hostile" in extra:
        failures.extend(hostile_checks(run, extra))
    return failures


def made_by_gateway(result: Result) -> bool:
    """A 5xx the gateway made itself: not 502, 503 or 504 with ``x-should-retry: false`` and an
    error ``code`` that is a failure class (an honest upstream-failure answer).

    >>> made_by_gateway(Result(0.0, "r", False, status=504, code="timeout", should_retry="false"))
    False
    >>> made_by_gateway(Result(0.0, "r", False, status=500, code="internal_error"))
    True
    """
    if result.status is None or result.status < 500:
        return False
    return not (
        result.status in HONEST_STATUSES
        and result.should_retry == "false"
        and result.code in HONEST_CODES
    )


def expectation(result: Result, cycle: float) -> str:
    """What ``result``'s client must get: ``success``, ``400`` or ``any`` answer (on time)."""
    hostile = HOSTILE_ROUTES.get(result.route)
    if hostile is not None:
        return hostile[2]
    return "success" if must_succeed(result.arrived, cycle) else "any"


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, value) points, per minute (NaN under two points).

    >>> slope_per_minute([(0.0, 10.0), (60.0, 11.0), (120.0, 12.0)])
    1.0
    """
    points = [(t, v) for t, v in points if not math.isnan(v)]
    if len(points) < 2:
        return math.nan
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return math.nan
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def record_check(
    results: Sequence[Result], rows: Sequence[tuple[str, str | None]]
) -> tuple[str, list[str]]:
    """The request log's rows against the requests sent, by the x-request-id each client sent
    (the row's ``client_request_id``) and the one the gateway answered (its ``request_id``):
    a figure line and the failed checks."""
    by_client: dict[str | None, int] = {}
    for _, client_id in rows:
        by_client[client_id] = by_client.get(client_id, 0) + 1
    ids = {request_id for request_id, _ in rows}
    sent = {r.ident for r in results}
    missing = [r for r in results if r.ident not in by_client]
    doubled = sorted(str(c) for c, n in by_client.items() if n > 1)
    unknown = sorted(str(c) for c in by_client if c not in sent)
    unrecorded = [r for r in results if r.request_id is not None and r.request_id not in ids]
    left = sum(r.left for r in missing)
    figure = (
        f"request log: {len(rows)} rows for {len(results)} requests sent; missing {len(missing)} "
        f"({left} of clients that left), doubled {len(doubled)}, not sent {len(unknown)}, "
        f"answered ids without a row {len(unrecorded)}"
    )
    failures = []
    if missing:
        failures.append(f"{len(missing)} requests have no row in the request log: {missing[:3]}")
    if doubled:
        failures.append(f"{len(doubled)} requests have more than one row: {doubled[:3]}")
    if unknown:
        failures.append(f"{len(unknown)} rows of requests never sent: {unknown[:3]}")
    if unrecorded:
        failures.append(f"{len(unrecorded)} answered x-request-ids have no row: {unrecorded[:3]}")
    return figure, failures


def hostile_checks(run: Run, extra: dict[str, Any]) -> list[str]:
    """Print the --hostile figures (routes, providers, RSS, records, secrets, log lines);
    return the failed checks."""
    failures: list[str] = []
    gathered: dict[str, Any] = extra["hostile"]
    if run.killed:
        failures.append(f"the RSS guard killed the gateway: {run.killed}")
    print("| route | requests (waited) | success | statuses |")
    print("| --- | --- | --- | --- |")
    for route in ("hedged", "sequential", *HOSTILE_ROUTES):
        stayed = [r for r in run.results if r.route == route and not r.left]
        statuses: dict[str, int] = {}
        for r in stayed:
            key = str(r.status) if r.status is not None else "none"
            statuses[key] = statuses.get(key, 0) + 1
        shown = ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items()))
        ok = sum(r.ok for r in stayed)
        print(f"| {route} | {len(stayed)} | {ok / max(1, len(stayed)):.1%} | {shown} |")
    for name, figures in extra["upstream"].items():
        if name in HOSTILE:
            outcomes = ", ".join(f"{k} {n}" for k, n in sorted(figures["outcomes"].items()))
            print(f"provider {name}: {figures['requests']} requests ({outcomes})")

    oversized = [r for r in run.results if r.size > ANSWER_BOUND]
    largest = max((r.size for r in run.results), default=0)
    print(f"largest answer {largest / 2**20:.2f} MB (bound {ANSWER_BOUND / 2**20:g} MB)")
    if oversized:
        failures.append(
            f"{len(oversized)} answers above {ANSWER_BOUND / 2**20:g} MB (an upstream body passed "
            f"through), e.g. {oversized[0]}"
        )

    baseline: Sample = extra["baseline"]
    drained: Sample = extra["drained"]
    during = [s for s in run.samples if s.t < run.seconds and not math.isnan(s.rss_mb)]
    peak = max([run.peak_mb, *(s.rss_mb for s in during)])
    end = during[-1].rss_mb if during else math.nan
    window = [(s.t, s.rss_mb) for s in during if s.t >= 60]
    slope = slope_per_minute(window) if run.seconds >= 180 else math.nan
    print(
        f"gateway RSS: start {baseline.rss_mb:.1f} MB, max {peak:.1f} MB, end of traffic "
        f"{end:.1f} MB, drained {drained.rss_mb:.1f} MB; least-squares slope from minute 2 "
        f"{slope:+.2f} MB/min ({len(window)} samples)"
    )
    if not peak <= baseline.rss_mb + PEAK_MB:
        failures.append(f"gateway RSS peaked at {peak:.0f} MB (bound: baseline + {PEAK_MB:g})")
    if not drained.rss_mb <= baseline.rss_mb + DRAINED_MB:
        failures.append(
            f"gateway RSS {drained.rss_mb:.0f} MB once drained (bound: baseline + {DRAINED_MB:g})"
        )
    if slope > RSS_SLOPE:
        failures.append(f"gateway RSS grows {slope:+.2f} MB a minute (bound {RSS_SLOPE:g})")

    figure, missing = record_check(run.results, gathered["rows"])
    print(figure)
    failures.extend(missing)

    answers = [r for r in run.results if r.leaks]
    by_key: dict[str, int] = {}
    for r in answers:
        for name in r.leaks:
            by_key[name] = by_key.get(name, 0) + 1
    print(
        f"secrets: {len(run.results)} answers, {gathered['rows_scanned']} rows, "
        f"{len(extra['target'].log)} log lines and /metrics searched; keys found in "
        f"{len(answers)} answers{' ' + str(by_key) if by_key else ''}, "
        f"{sum(gathered['row_leaks'].values())} rows, "
        f"{len(gathered['log_leaks'])} log lines, /metrics {gathered['metrics_leaks'] or 'none'}"
    )
    if answers:
        failures.append(f"keys in {len(answers)} answers, e.g. {answers[0]}")
    if gathered["row_leaks"]:
        failures.append(f"keys in request-log rows: {gathered['row_leaks']}")
    if gathered["log_leaks"]:
        line, names = gathered["log_leaks"][0]
        failures.append(f"keys in {len(gathered['log_leaks'])} log lines, e.g. {names}: {line!r}")
    if gathered["metrics_leaks"]:
        failures.append(f"keys in /metrics: {gathered['metrics_leaks']}")
    loud = [line for line in extra["target"].log if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    for line in loud[:LOUD_SHOWN]:
        print(f"  gateway log: {line.rstrip()[:240]}")
    forged, controls = gathered["forged"], gathered["controls"]
    print(f"log lines: {len(forged)} forged, {len(controls)} with control characters")
    if forged:
        failures.append(f"{len(forged)} forged log lines, e.g. {forged[0][:200]!r}")
    if controls:
        failures.append(f"{len(controls)} log lines with control characters: {controls[0][:200]!r}")
    return failures


def drain(run: Run, extra: dict[str, Any]) -> list[str]:
    """Print the start and drained figures; return the failed checks (and, with --serve, the
    gateway's exit)."""
    failures: list[str] = []
    baseline: Sample = extra["baseline"]
    drained: Sample = extra["drained"]
    pool: int = extra["pool"]
    target: Target = extra["target"]
    who = "gateway process" if target.pid is not None else "this process"
    peak = max((s.tasks for s in run.samples if s.tasks is not None), default=None)
    print(
        f"baseline ({who}): rss {baseline.rss_mb:.1f} MB, fds {baseline.fds}, "
        f"tasks {show(baseline.tasks)}, threads {baseline.threads}; peak tasks {show(peak)}; "
        f"drained: rss {drained.rss_mb:.1f} MB, fds {drained.fds}, tasks {show(drained.tasks)}, "
        f"threads {drained.threads}, idle pooled upstream connections {pool}"
    )
    tasks, base_tasks = drained.tasks, baseline.tasks
    if tasks is not None and base_tasks is not None and tasks - pool > base_tasks + TASK_TOLERANCE:
        failures.append(f"tasks did not drain: {tasks} ({pool} pooled) vs baseline {base_tasks}")
    if drained.fds - extra["fds_per_pooled"] * pool > baseline.fds + FD_TOLERANCE:
        failures.append(
            f"descriptors did not drain: {drained.fds} ({pool} pooled) vs baseline {baseline.fds}"
        )
    if target.pid is not None:
        levels = {
            level: sum(f" {level} " in line for line in target.log)
            for level in ("WARNING", "ERROR", "CRITICAL")
        }
        print(
            f"gateway: exit code {target.exit_code} {target.stop_seconds:.1f} s after SIGTERM; "
            f"log {len(target.log)} lines, "
            + ", ".join(f"{level} {n}" for level, n in levels.items())
        )
        if target.exit_code != 0 or not target.stop_seconds <= SHUTDOWN_BOUND:
            failures.append(
                f"the gateway exited {target.exit_code} after {target.stop_seconds:.1f} s "
                f"(bound {SHUTDOWN_BOUND:g} s)"
            )
    return failures


def show(value: int | None) -> str:
    return "-" if value is None else str(value)


def minutes(run: Run) -> None:
    """A table per minute: requests, success of those who waited, mean RSS, fds and tasks."""
    print(
        "| minute | requests | success | p99 ms | rss MB | rss net MB | fds | tasks (max) "
        "| threads |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for minute in range(math.ceil(run.seconds / 60)):
        low, high = minute * 60, (minute + 1) * 60
        stayed = [r for r in run.results if low <= r.arrived < high and not r.left]
        ok = sum(r.ok for r in stayed)
        p99 = quantile([r.seconds for r in stayed], 0.99)
        samples = [s for s in run.samples if low <= s.t < high]
        rss = mean([s.rss_mb for s in samples])
        net = mean([s.net_mb for s in samples])
        fds = mean([float(s.fds) for s in samples])
        tasks = [s.tasks for s in samples if s.tasks is not None]
        threads = mean([float(s.threads) for s in samples])
        shown = f"{mean([float(n) for n in tasks]):.1f} ({max(tasks)})" if tasks else "-"
        print(
            f"| {minute + 1} | {len(stayed)} | {ok / max(1, len(stayed)):.1%} | "
            f"{p99 * 1000:.0f} | {rss:.1f} | {net:.1f} | {fds:.1f} | {shown} | {threads:.1f} |"
        )


def slopes(run: Run) -> list[str]:
    """Compare the second minute with the last one; print a table; return failed checks."""
    second = [s for s in run.samples if 60 <= s.t < 120]
    last = [s for s in run.samples if run.seconds - 60 <= s.t < run.seconds]
    if not second or not last or run.seconds < 180:
        return ["a slope needs a run of at least 3 minutes"]
    minutes = (run.seconds - 60 - 60) / 60
    failures: list[str] = []
    print("| measure | minute 2 (mean) | last minute (mean) | slope per minute | bound |")
    print("| --- | --- | --- | --- | --- |")
    # Bounds: a leak of one task or descriptor per request, or ~10 KB a request, shows far above.
    # rss_mb is printed for reference; the bound applies to net_mb, the process less the
    # driver's growing list of request records (record_bytes() each; with --serve the gateway
    # holds none, and net_mb is its RSS). Threads are printed for reference.
    measures = [("rss_mb", math.inf), ("net_mb", 0.5), ("fds", 0.5), ("tasks", 0.5)]
    for name, bound in [*measures, ("threads", math.inf)]:
        values = [getattr(s, name) for s in second], [getattr(s, name) for s in last]
        if any(v is None for v in (*values[0], *values[1])):
            continue  # tasks of a gateway in its own process
        before, after = mean([float(v) for v in values[0]]), mean([float(v) for v in values[1]])
        slope = (after - before) / minutes
        print(f"| {name} | {before:.1f} | {after:.1f} | {slope:+.2f} | {bound:g} |")
        if slope > bound:
            failures.append(f"{name} grows {slope:+.2f} per minute (bound {bound:g})")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="one 48 s cycle at 40 req/s")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--serve", action="store_true", help="the gateway as `failover serve` in a subprocess"
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="add hostile providers, keys, the request log and their checks (needs --serve)",
    )
    parser.add_argument(
        "--huge-mb", type=float, default=HUGE_MB, help="--hostile: the huge answer's size, MB"
    )
    parser.add_argument(
        "--rss-guard-mb",
        type=float,
        default=RSS_GUARD_MB,
        help="--hostile: kill the gateway past this RSS, MB",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations (in process); print the lines that grew most after minute 1",
    )
    args = parser.parse_args(argv)
    if args.serve and args.tracemalloc:
        parser.error("--tracemalloc traces this process: the gateway must run in it (no --serve)")
    if args.hostile and not args.serve:
        parser.error("--hostile measures the gateway's memory alone: it needs --serve")
    seconds, cycle = (48.0, 48.0) if args.short else (args.seconds, 60.0)
    memory = MemoryTrace(at=min(60.0, seconds / 2)) if args.tracemalloc else None
    started = time.monotonic()
    run, extra = asyncio.run(
        soak(
            seconds,
            args.rate,
            cycle,
            args.seed,
            serve=args.serve,
            memory=memory,
            hostile=args.hostile,
            huge_mb=args.huge_mb,
            guard_mb=args.rss_guard_mb,
        )
    )
    failures = check(run, extra, long=not args.short)
    if memory is not None:
        print("\n".join(memory.report()))
    print(f"wall time {time.monotonic() - started:.1f} s")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("soak: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
