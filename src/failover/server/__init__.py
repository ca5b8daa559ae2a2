"""The OpenAI-compatible HTTP gateway: a raw ASGI app on uvicorn, and ``failover serve``.

::

    app.py            GatewayApp: dispatch, admission (auth, inbound limits), lifespan, /ready
    surface.py        SurfaceHandler: one request on any surface, through the gateway's front door
    surfaces/         one codec per API (chat: POST /v1/chat/completions)
    status.py         what a failed request is answered with: status, message, code, headers
    answers.py        OpenAI-shaped errors and headers
    watch.py          clients that leave cancel their request (one timer for all)
    exchange.py       one request/answer: headers read once, the body within its limit
    auth.py           client keys: constant-time checks, key fingerprints
    limits.py         GCRA inbound limits, in memory
    shared_limits.py  the same limits shared through Redis, with a local fallback
    info.py           /v1/models and /v1/status bodies
    openapi.py        the OpenAPI 3.1 document (/openapi.json)
    serving.py        uvicorn wiring, workers, signals and drain; `failover serve`
    connection.py     one client connection's limits: head size, slow clients (408/414/431)
    embedded.py       the same server as a task of the caller's loop (demo, tests)

>>> app = GatewayApp(Gateway.from_file("failover.yaml"))  # doctest: +SKIP
"""

from failover.server.app import GatewayApp, Phase
from failover.server.auth import Authenticator, Identity, key_id
from failover.server.embedded import serving
from failover.server.limits import LocalLimiter, Rate, gcra
from failover.server.serving import serve_command, uvicorn_config
from failover.server.shared_limits import SharedLimiter

__all__ = [
    "Authenticator",
    "GatewayApp",
    "Identity",
    "LocalLimiter",
    "Phase",
    "Rate",
    "SharedLimiter",
    "gcra",
    "key_id",
    "serve_command",
    "serving",
    "uvicorn_config",
]
