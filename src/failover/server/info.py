"""The read-only answers: ``/v1/models``, ``/v1/status``, ``/health`` and ``/ready`` bodies.

``/v1/models`` lists the configured routes first (their targets in order), then each deployment
that a client may also name directly, in OpenAI's list shape, so ``client.models.list()`` works.
It depends only on the config, so its body is built once. ``/v1/status`` is each deployment's
health row (:meth:`~failover.health.breaker.DeploymentStatus.as_dict`), read from the gateway's
health backend at each call. :func:`is_request_id` says which ``/v1/requests/{id}`` may name a
record at all; any other is answered 404 without asking the store.
"""

from __future__ import annotations

from typing import Any

import orjson

from failover.config import Config
from failover.gateway import Gateway

__all__ = ["MAX_REQUEST_ID", "is_request_id", "models_body", "status_body"]

MAX_REQUEST_ID = 128
"""The longest id ``GET /v1/requests/{id}`` looks up (failover's own are 28 characters)."""


def models_body(config: Config, created: int) -> bytes:
    """The ``GET /v1/models`` answer: routes, then deployments not shadowed by a route.

    >>> from failover.config import config_from_dict
    >>> config = config_from_dict({"deployments": {"a": {"provider": "openai", "model": "m"}},
    ...                            "routes": {"r": {"targets": ["a"]}}}, env={})
    >>> [m["id"] for m in orjson.loads(models_body(config, 0))["data"]]
    ['r', 'a']
    """
    data: list[dict[str, Any]] = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "failover",
            "kind": "route",
            "targets": list(route.targets),
        }
        for name, route in config.routes.items()
    ]
    data.extend(
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": deployment.provider.value,
            "kind": "deployment",
            "targets": [name],
        }
        for name, deployment in config.deployments.items()
        if name not in config.routes
    )
    return orjson.dumps({"object": "list", "data": data})


def is_request_id(text: str) -> bool:
    """Whether ``text`` (the path after ``/v1/requests/``, decoded) may name a record.

    failover's ids are ``req_`` and hex, but a library caller may choose its own, so anything
    printable passes, up to :data:`MAX_REQUEST_ID` characters and without ``/``. A control
    character never names a record, and a NUL makes PostgreSQL refuse the query: answered as a
    store failure, it would be a 503 that tells the client to retry.

    >>> [is_request_id(t) for t in ("req_0a1b", "../etc/passwd", "req_\\x00", "x" * 129)]
    [True, False, False, False]
    """
    return 0 < len(text) <= MAX_REQUEST_ID and "/" not in text and text.isprintable()


async def status_body(gateway: Gateway) -> bytes:
    """The ``GET /v1/status`` answer: ``{"object": "list", "data": [row, ...]}``."""
    rows = await gateway.status()
    return orjson.dumps({"object": "list", "data": [row.as_dict() for row in rows.values()]})
