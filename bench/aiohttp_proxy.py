"""The Python reference for ``bench/overhead.py``: a bare aiohttp reverse proxy, about 60 lines.

    .venv/bin/python bench/aiohttp_proxy.py --upstream http://127.0.0.1:PORT [--port 0]

It forwards ``POST /v1/chat/completions`` to the upstream through one pooled keep-alive
``aiohttp.ClientSession`` and answers the upstream's status and body, on uvloop, with no access
log: what any Python gateway does at least, and nothing more (no parsing, no routing, no
retries, no records). It prints ``proxy listening on URL`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
import uvloop
from aiohttp import web

_HEADERS = {"Content-Type": "application/json"}


async def serve(upstream: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    target = upstream.rstrip("/") + "/v1/chat/completions"
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=60)
    )

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(target, data=body, headers=_HEADERS) as response:
            payload = await response.read()
            return web.Response(body=payload, status=response.status, headers=_HEADERS)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"proxy listening on http://127.0.0.1:{bound}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await runner.cleanup()
    await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the upstream's base URL")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.port))


if __name__ == "__main__":
    main()
