"""The OpenAI-compatible HTTP gateway: a raw ASGI app on uvicorn, and ``failover serve``.

::

    app.py            GatewayApp: dispatch, admission (auth, inbound limits), lifespan, /ready
    chat.py           POST /v1/chat/completions: JSON and SSE, client disconnects cancel
    validate.py       the chat body checked: 400 with the field named
    answers.py        OpenAI-shaped errors and the engine's failures as HTTP answers
    exchange.py       one request/answer: headers read once, the body within its limit
    auth.py           client keys: constant-time checks, key fingerprints
    limits.py         GCRA inbound limits, in memory
    shared_limits.py  the same limits shared through Redis, with a local fallback
    info.py           /v1/models and /v1/status bodies
    openapi.py        the OpenAPI 3.1 document (/openapi.json)
    context.py        RequestContext and RequestHook: what the request log is told
    serving.py        uvicorn wiring, workers, signals and drain; `failover serve`
    connection.py     one client connection's limits: head size, slow clients (408/414/431)
    embedded.py       the same server as a task of the caller's loop (demo, tests)

>>> app = GatewayApp(Gateway.from_file("failover.yaml"))  # doctest: +SKIP
"""

from failover.server.app import GatewayApp, Phase
from failover.server.auth import Authenticator, Identity, key_id
from failover.server.connection import ConnectionLimits, GuardedHttpTools
from failover.server.context import RequestContext, RequestHook
from failover.server.embedded import EmbeddedServer, serving
from failover.server.limits import LocalLimiter, Rate, gcra
from failover.server.serving import run_server, serve, serve_command, uvicorn_config
from failover.server.shared_limits import SharedLimiter
from failover.server.validate import ChatCall, InvalidRequest, parse_chat

__all__ = [
    "Authenticator",
    "ChatCall",
    "ConnectionLimits",
    "EmbeddedServer",
    "GatewayApp",
    "GuardedHttpTools",
    "Identity",
    "InvalidRequest",
    "LocalLimiter",
    "Phase",
    "Rate",
    "RequestContext",
    "RequestHook",
    "SharedLimiter",
    "gcra",
    "key_id",
    "parse_chat",
    "run_server",
    "serve",
    "serve_command",
    "serving",
    "uvicorn_config",
]
