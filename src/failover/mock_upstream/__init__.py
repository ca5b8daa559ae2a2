"""A fault-injecting OpenAI-compatible upstream, for tests, demos and benchmarks.

``failover mock-upstream --port 8100 --profile flaky`` serves it from the command line;
:class:`MockUpstream` serves it inside the running event loop (127.0.0.1, port 0 by default)::

    async with MockUpstream("flaky", name="primary", seed=7) as mock:
        client = openai.AsyncOpenAI(base_url=mock.url, api_key="x", max_retries=0)
        ...
        mock.set_profile("down")          # faults change during a run
        mock.stats.outcomes["error"]

Endpoints
---------
- ``POST /v1/chat/completions``: JSON, or SSE when ``"stream": true`` in OpenAI's chunk format
  (role chunk, one chunk per word, finish chunk, a usage chunk with empty ``choices`` when
  ``stream_options.include_usage``, then ``data: [DONE]``). The answer is
  ``"Hello from NAME. This is a mock answer."``, so demos and tests see which mock won; usage
  counts words (prompt: the words of every message).
- ``GET /v1/models``: one model, ``mock-model``. Latency, errors, 429s, hangs and drops apply to
  it too (a probe of a ``down`` mock fails); malformed and stream faults do not.
- ``GET /health``: the mock's own liveness, never faulted.
- ``GET /_mock/profile``: the active profile as JSON. ``PUT /_mock/profile`` with a JSON object:
  ``"profile": NAME`` switches to a named profile, ``"seed": N`` reseeds the dice, and any
  profile field (the names below with underscores, e.g. ``{"error_rate": 0.5}``) overrides it;
  answers the new profile, or 400 naming the bad field (the old profile then stays).
- ``GET /_mock/stats``: ``requests``, ``in_flight``, ``client_disconnects`` (clients that left
  before their answer was complete), ``outcomes`` (ok, error, rate_limited, hang, drop,
  malformed, stream_cut, stream_error, body_cut, bad_request, and ``hostile_MODE`` per hostile
  mode, e.g. ``hostile_lying_length``), ``statuses``, ``paths``.
  ``DELETE /_mock/stats`` zeroes them.

Profiles (``--list-profiles``)
------------------------------
``healthy`` instant; ``slow`` fixed 2 s; ``heavy-tail`` lognormal, median 200 ms, 2% outliers of
2-6 s; ``flaky`` 20% 500/503; ``rate-limited`` 30% 429 with Retry-After 1 s (``retry-after``
and ``retry-after-ms``); ``down`` 503 every time: the port stays open so the control API can
bring the mock back (a refused connection is a closed port; a reset is ``x-mock-drop``);
``hanging`` accepts and never answers; ``malformed`` 200 with invalid JSON or without
``choices``; ``stream-cut`` streams closed after 3 events without [DONE] (non-streamed bodies:
Content-Length announced, half the bytes sent, connection closed); ``hostile`` one hostile
behaviour per request, drawn from all of them (below).

Per-request headers
-------------------
Each ``x-mock-*`` header overrides one profile field for that request only (the header is the
field's name with dashes). A bad value answers 400 naming the header.

- ``x-mock-profile: NAME``: start from that named profile instead of the active one.
- ``x-mock-latency: SPEC``: seconds before the answer (before the first byte of a stream):
  ``0.5``, ``uniform:0.1,0.5``, ``lognormal:MEDIAN,SIGMA``, each optionally followed by
  ``;outliers:RATE,LOW,HIGH``. Applies to errors too.
- ``x-mock-error-rate: P``: probability in [0, 1] of an error answer.
- ``x-mock-error-status: 503`` or ``500,503``: the error status (one drawn at random). Without
  ``x-mock-error-rate`` this header (or the next) fails the request for sure.
- ``x-mock-error-code: CODE``: ``error.code`` of the body; known codes bring their own status
  and type when no status is given: ``rate_limit_exceeded`` and ``insufficient_quota`` (429),
  ``context_length_exceeded`` and ``invalid_value`` (400), ``invalid_api_key`` (401),
  ``model_not_found`` (404), ``server_error`` (500), ``overloaded`` (529). Others: 500.
- ``x-mock-error-type: TYPE``: ``error.type`` (default: the code's or the status's usual one).
- ``x-mock-error-body: openai|text|html|empty``: the error body's shape (default ``openai``,
  ``{"error": {"message", "type", "param", "code"}}``).
- ``x-mock-rate-limit-share: P``: probability of a 429 ``rate_limit_exceeded``.
- ``x-mock-retry-after: SECONDS``: sent with every error answer (none when unset).
- ``x-mock-retry-after-form: seconds|date|ms|all``: ``retry-after: 2``; an HTTP date (rounded
  up to the second); ``retry-after-ms: 2000``; or both headers as OpenAI sends them.
- ``x-mock-hang: 1``: accept and never answer (until the client leaves).
- ``x-mock-drop: 1``: close the connection with a TCP reset instead of answering.
- ``x-mock-malformed: json|no-choices|empty-choices|html``: a 200 that is not a valid completion
  (comma-separated: one drawn at random). In a stream: one bad event, then [DONE].
- ``x-mock-content-type: TYPE``: a normal answer sent under this (wrong) Content-Type.
- ``x-mock-stream-cut-after: N``: send N stream events (the first is the role chunk) then close
  the connection, no [DONE]; a non-streamed body is cut halfway.
- ``x-mock-stream-cut-mode: close|eof``: ``close`` drops the connection (unfinished chunked
  body); ``eof`` ends the HTTP body cleanly, still without [DONE] (a silent cut).
- ``x-mock-stream-error-after: N``: send N stream events, then an OpenAI error event
  (``data: {"error": {...}}`` from ``x-mock-error-code``, default ``server_error``) and end.
- ``x-mock-chunk-delay: SECONDS``: a slow body: stream events spaced by this delay; a
  non-streamed body goes out in 8 pieces spaced by it.
- ``x-mock-giant: BYTES``: an answer of about this many bytes of words (4 KiB per stream chunk).
- ``x-mock-hostile: MODE``: a hostile answer (comma-separated: one drawn at random), made while
  it is sent, never held (:mod:`failover.mock_upstream.hostile`): ``huge`` (a valid answer of
  ``x-mock-hostile-bytes``, default 100 MB), ``lying-length`` (Content-Length 10 GB, sent for
  ever), ``endless-chunked``, ``empty-deltas`` (a stream that never commits), ``endless-line``
  (one SSE line with no newline, ever), ``key-echo`` (an error whose type, code and message quote
  the request's key, with a forged log line and ANSI escapes; 400 unless
  ``x-mock-error-status``), ``key-text`` (a plain-text error with the key across character
  1,000), ``drip`` (one byte every ``x-mock-drip-interval`` seconds, default 2). Applies to
  ``/v1/models`` too. Hostile beats everything but drop and hang; a connection accepted and
  never answered is ``x-mock-hang``.
- ``x-mock-hostile-bytes: BYTES``, ``x-mock-drip-interval: SECONDS``: see ``x-mock-hostile``.

Only ``rps_limit`` (429 above that many requests per second, a token bucket shared by all
requests) cannot be set per request: it is a server-wide budget, set by a profile or
``PUT /_mock/profile``. The dice come from one ``random.Random(seed)`` per mock.
"""

from failover.mock_upstream.decide import Outcome, RateBudget
from failover.mock_upstream.profiles import PROFILES, Latency, Profile, override
from failover.mock_upstream.server import MockUpstream

__all__ = [
    "PROFILES",
    "Latency",
    "MockUpstream",
    "Outcome",
    "Profile",
    "RateBudget",
    "override",
]
