"""Reading a running gateway's ``GET /v1/status``, for ``failover status``.

The one place this package talks HTTP to a gateway: aiohttp's exceptions become
:class:`StatusUnavailable` here, with a message a person can act on, never the key.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson
from yarl import URL

from failover.errors import StatusUnavailable
from failover.providers.redact import Redactor

__all__ = ["DEFAULT_GATEWAY_URL", "StatusUnavailable", "fetch_status", "status_url"]

DEFAULT_GATEWAY_URL = "http://127.0.0.1:4000"

_MAX_BODY = 4 * 1024 * 1024


def status_url(url: str) -> URL:
    """``{url}/v1/status``; ``url`` may omit ``http://`` or already end in ``/v1``.

    >>> str(status_url("127.0.0.1:4000/v1/"))
    'http://127.0.0.1:4000/v1/status'
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = URL(text)
    except ValueError:
        raise StatusUnavailable(f"not a URL: {_shown(url)!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise StatusUnavailable(f"not an http(s) URL: {_shown(url)!r}")
    path = parsed.path.rstrip("/")
    path = path.removesuffix("/v1")
    return parsed.with_path(f"{path}/v1/status").with_query(None).with_fragment(None)


async def fetch_status(
    url: str = DEFAULT_GATEWAY_URL, *, key: str | None = None, request_timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The rows of the gateway's ``/v1/status`` (each a ``DeploymentStatus.as_dict()``).

    ``key`` is sent as ``Authorization: Bearer`` to a gateway with auth; the whole exchange takes
    at most ``request_timeout`` seconds. Raises
    :class:`StatusUnavailable` when the gateway cannot be reached or answers anything else.
    """
    target = status_url(url)
    where = str(target.origin())  # no user info, path or query: nothing secret
    redact = Redactor([key] if key else [])
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session,
            # A redirect could carry the key to another host: the status is expected here.
            session.get(target, headers=headers, allow_redirects=False) as response,
        ):
            body = await response.content.read(_MAX_BODY)
            status = response.status
    except TimeoutError:
        raise StatusUnavailable(
            f"the gateway at {where} did not answer within {request_timeout:g}s"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        reason = redact(_reason(exc))
        raise StatusUnavailable(
            f"cannot reach the gateway at {where} ({reason}); is `failover serve` running "
            "there? (--url sets where to look)"
        ) from None
    if status in (401, 403):
        hint = "the key given with --key was refused" if key else "give its key with --key"
        raise StatusUnavailable(f"the gateway at {where} answered {status}: {hint}")
    if status != 200:
        detail = _error_message(body, redact)
        raise StatusUnavailable(
            f"the gateway at {where} answered {status} to GET {target.path}"
            + (f": {detail}" if detail else "")
        )
    return _rows(body, where)


def _rows(body: bytes, where: str) -> list[dict[str, Any]]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StatusUnavailable(
            f"the gateway at {where} answered GET /v1/status with a body that is not JSON"
        ) from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise StatusUnavailable(
            f"the gateway at {where} answered GET /v1/status with an unexpected shape "
            '(expected {"object": "list", "data": [...]})'
        )
    return data


def _error_message(body: bytes, redact: Redactor) -> str:
    """The ``error.message`` of an OpenAI-shaped error body, short; else nothing."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        return ""
    line = " ".join(redact(message).split())
    return line[:200]


def _reason(exc: BaseException) -> str:
    """A short cause: "Connection refused" rather than aiohttp's whole sentence."""
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    number, text = getattr(cause, "errno", None), getattr(cause, "strerror", None)
    if isinstance(number, int) and number > 0:
        return os.strerror(number)
    if isinstance(text, str) and text:
        return text  # a DNS failure: "Name or service not known"
    return str(exc) or type(exc).__name__


def _shown(url: str) -> str:
    """``url`` without user info, which may hold a password."""
    try:
        parsed = URL(url)
    except ValueError:
        return "<unparsable URL>"
    if parsed.user is None and parsed.password is None:
        return url
    return str(parsed.with_user(None))
