#!/usr/bin/env python3
"""The framework floor: a minimal aiohttp reverse proxy with no L402 logic at all.

The benchmark runs it beside our gateway (one process, like `serve --workers
1`) so that "what the L402 logic costs" and "what the framework costs" can be
told apart: an `aiohttp.web.Application` with one catch-all route, forwarding
every request through one pooled `aiohttp.ClientSession` (keep-alive, no
cookie jar, no automatic decompression) and sending the answer back whole. It
forwards the method, path, query and headers (hop-by-hop headers dropped),
logs nothing and counts nothing: the least a typical aiohttp proxy does.

Usage: python bench/minimal_proxy.py --port P --upstream http://127.0.0.1:U
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


def make_app(upstream: str) -> web.Application:
    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION_KEY] = aiohttp.ClientSession(
            base_url=upstream,
            connector=aiohttp.TCPConnector(limit=256),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        yield
        await app[SESSION_KEY].close()

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read() if request.body_exists else None
        async with app[SESSION_KEY].request(
            request.method, request.rel_url, headers=headers, data=body, allow_redirects=False
        ) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=out)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(host: str, port: int, upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"minimal proxy listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="http://host:port")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
