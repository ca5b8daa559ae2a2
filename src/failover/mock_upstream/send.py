"""Ways of writing an answer that a plain ``web.Response`` cannot: spaced stream events, slow
bodies, bodies cut halfway, bodies that never end, connections closed or reset under the request.

Each writer returns the response for aiohttp to finish (after a cut it finishes nothing: the
transport is closing, which aiohttp takes quietly) and counts a client that left mid-write.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterable

import orjson
from aiohttp import web

from failover.mock_upstream.stats import MockStats

__all__ = ["close", "cut_body", "events", "invalid", "pieces", "slow_body"]

_BODY_PIECES = 8  # a slow non-streamed body goes out in this many pieces


async def events(
    request: web.Request,
    stats: MockStats,
    headers: dict[str, str],
    chunks: list[bytes],
    delay: float,
    *,
    cut: bool,
) -> web.StreamResponse:
    """Stream ``chunks`` (SSE events), ``delay`` seconds apart; then close the connection if
    ``cut``."""
    response = web.StreamResponse(headers=headers)
    try:
        await response.prepare(request)
        if delay:
            for index, chunk in enumerate(chunks):
                if index:
                    await asyncio.sleep(delay)
                await response.write(chunk)
        else:
            await response.write(b"".join(chunks))
    except ConnectionResetError:
        stats.client_disconnects += 1
        return response
    if cut:
        # After the written events are flushed: the client sees an unfinished chunked body, as
        # when a provider's connection drops mid-stream.
        close(request, reset=False)
    return response


async def slow_body(
    request: web.Request, stats: MockStats, body: bytes, content_type: str, delay: float
) -> web.StreamResponse:
    """Send ``body`` (with its Content-Length) in 8 pieces, ``delay`` seconds apart."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = len(body)
    size = len(body) // _BODY_PIECES + 1
    try:
        await response.prepare(request)
        for start in range(0, len(body), size):
            if start:
                await asyncio.sleep(delay)
            await response.write(body[start : start + size])
    except ConnectionResetError:
        stats.client_disconnects += 1
    return response


async def cut_body(
    request: web.Request, stats: MockStats, body: bytes, content_type: str
) -> web.StreamResponse:
    """Announce ``body``'s full Content-Length, send half of it, close the connection."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = len(body)
    try:
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    except ConnectionResetError:
        stats.client_disconnects += 1
        return response
    close(request, reset=False)
    return response


async def pieces(
    request: web.Request,
    stats: MockStats,
    status: int,
    content_type: str,
    parts: Iterable[bytes],
    *,
    length: int | None,
    delay: float = 0.0,
) -> web.StreamResponse:
    """Send ``parts`` one after another, ``delay`` seconds apart, announcing Content-Length
    ``length`` (None: chunked) whether or not they add up to it.

    ``parts`` may never end: each write waits until the client has taken the bytes before (the
    transport's flow control), so the answer is sent as fast as it is read and nothing piles up
    here; it ends when the client leaves.
    """
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    if length is not None:
        response.content_length = length
    try:
        await response.prepare(request)
        for index, part in enumerate(parts):
            if delay and index:
                await asyncio.sleep(delay)
            await response.write(part)
    except ConnectionResetError:
        stats.client_disconnects += 1
    return response


def close(request: web.Request, *, reset: bool) -> None:
    """End the connection under the request: FIN after flushing, or RST at once (``reset``)."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: closing sends RST, what clients see as "connection reset by peer".
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def invalid(message: str) -> web.Response:
    """A 400 in OpenAI's error shape: a request the mock itself cannot take."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return web.Response(
        status=400, body=orjson.dumps({"error": error}), content_type="application/json"
    )
