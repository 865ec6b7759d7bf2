"""One small shop written twice, as a FastAPI app and as an aiohttp app, selling with gateway.embed.

Both are served for real on 127.0.0.1: FastAPI by uvicorn (its lifespan opens
and closes the seller), aiohttp by its AppRunner (cleanup context). The
handlers record what reached them, so tests can tell that a refused request
never did.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from aiohttp import web
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.embed import L402, PAID, STATE_KEY, L402Middleware, Paid, PricedRoute

ROUTES = [
    PricedRoute("preview", "^/premium/preview$", price_sats=0),  # a free carve-out
    PricedRoute("premium", "^/premium", price_sats=10),
    PricedRoute("once", "^/once$", price_sats=42, token_mode="per-request", methods=["POST"]),
    PricedRoute("hold", "^/hold$", price_sats=7, token_mode="per-request"),
    PricedRoute("ws", "^/ws$", price_sats=3, token_mode="per-request"),
]


@dataclass
class Seen:
    """What the app's handlers saw, and the gate the /hold handler waits at."""

    calls: Counter[str] = field(default_factory=Counter)
    entered: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)  # /hold's requests
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finish: asyncio.Event = field(default_factory=asyncio.Event)  # ends /hold?stream=1 bodies

    def let_go(self) -> None:
        self.release.set()
        self.finish.set()


async def _stream(seen: Seen) -> AsyncIterator[bytes]:
    """A body that starts at once and ends when the test says so."""
    yield b"first part;"
    await seen.finish.wait()
    yield b"last part"


def _paid_json(paid: Paid | None) -> dict[str, Any]:
    if paid is None:
        return {"paid": None}
    return {"paid": {"route": paid.route, "token_id": paid.token_id, "single_use": paid.single_use}}


# -- FastAPI ---------------------------------------------------------------------------


def fastapi_app(seller: L402, seen: Seen) -> FastAPI:
    app = FastAPI()
    app.add_middleware(L402Middleware, paywall=seller)
    app.mount("/metrics", seller.metrics_asgi_app())

    def paid_of(request: Request) -> Paid | None:
        return getattr(request.state, STATE_KEY, None)

    @app.get("/premium")
    async def premium(request: Request) -> dict[str, Any]:
        seen.calls["premium"] += 1
        return {"signal": "buy", **_paid_json(paid_of(request))}

    @app.get("/premium/preview")
    async def preview(request: Request) -> dict[str, Any]:
        seen.calls["preview"] += 1
        return {"preview": True, **_paid_json(paid_of(request))}

    @app.post("/once")
    async def once(request: Request, status: int = 200, fail: bool = False) -> JSONResponse:
        seen.calls["once"] += 1
        body = await request.body()
        if fail:
            raise RuntimeError("the app broke")
        return JSONResponse({"size": len(body), **_paid_json(paid_of(request))}, status)

    @app.get("/once")
    async def once_read() -> dict[str, str]:
        seen.calls["once_read"] += 1
        return {"about": "POST /once costs 42 sats; reading this is free"}

    @app.get("/hold", response_model=None)
    async def hold(request: Request, stream: bool = False) -> dict[str, Any] | StreamingResponse:
        seen.calls["hold"] += 1
        await seen.entered.put(request)
        await seen.release.wait()
        if stream:
            return StreamingResponse(_stream(seen))
        return {"held": True, **_paid_json(paid_of(request))}

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        seen.calls["open"] += 1
        return {"open": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        seen.calls["ws"] += 1
        await websocket.accept()
        text = await websocket.receive_text()
        paid = websocket.scope["state"][STATE_KEY]
        await websocket.send_json({"echo": text, "route": paid.route})
        await websocket.close()

    return app


@dataclass
class Served:
    base: str
    uvicorn: uvicorn.Server | None = None

    def url(self, path: str) -> str:
        return self.base + path

    def connections(self) -> int:
        """Open connections as the server counts them (uvicorn only)."""
        assert self.uvicorn is not None
        return len(self.uvicorn.server_state.connections)


def _listening_socket() -> socket.socket:
    """Bound and listening before the server starts: clients queue until it accepts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited when accepted
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@asynccontextmanager
async def serve_uvicorn(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", root_path: str = ""
) -> AsyncIterator[Served]:
    """`root_path`: uvicorn's `--root-path`."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan=lifespan, log_level="warning", ws="websockets-sansio", root_path=root_path
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Served(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()


# -- aiohttp ---------------------------------------------------------------------------


async def _a_premium(request: web.Request) -> web.Response:
    request.app[SEEN].calls["premium"] += 1
    return web.json_response({"signal": "buy", **_paid_json(request.get(PAID))})


async def _a_preview(request: web.Request) -> web.Response:
    request.app[SEEN].calls["preview"] += 1
    return web.json_response({"preview": True, **_paid_json(request.get(PAID))})


async def _a_once(request: web.Request) -> web.Response:
    request.app[SEEN].calls["once"] += 1
    body = await request.read()
    if request.query.get("fail"):
        raise RuntimeError("the app broke")
    status = int(request.query.get("status", "200"))
    return web.json_response({"size": len(body), **_paid_json(request.get(PAID))}, status=status)


async def _a_once_read(request: web.Request) -> web.Response:
    request.app[SEEN].calls["once_read"] += 1
    return web.json_response({"about": "POST /once costs 42 sats; reading this is free"})


async def _a_hold(request: web.Request) -> web.StreamResponse:
    seen = request.app[SEEN]
    seen.calls["hold"] += 1
    await seen.entered.put(request)
    await seen.release.wait()
    if request.query.get("stream"):
        response = web.StreamResponse()
        await response.prepare(request)
        async for part in _stream(seen):
            await response.write(part)
        await response.write_eof()
        return response
    return web.json_response({"held": True, **_paid_json(request.get(PAID))})


async def _a_open(request: web.Request) -> web.Response:
    request.app[SEEN].calls["open"] += 1
    return web.json_response({"open": True})


SEEN = web.AppKey("seen", Seen)


def aiohttp_app(seller: L402, seen: Seen, *, lifecycle: bool = True) -> web.Application:
    app = web.Application()
    app[SEEN] = seen
    if lifecycle:
        seller.setup_aiohttp(app)
    else:  # the middleware alone: the seller never starts
        app.middlewares.append(seller.aiohttp_middleware())
    app.router.add_get("/premium", _a_premium)
    app.router.add_get("/premium/preview", _a_preview)
    app.router.add_post("/once", _a_once)
    app.router.add_get("/once", _a_once_read)
    app.router.add_get("/hold", _a_hold)
    app.router.add_get("/open", _a_open)
    app.router.add_get("/metrics", seller.aiohttp_metrics)
    return app


@asynccontextmanager
async def serve_aiohttp(
    app: web.Application, *, handler_cancellation: bool = False
) -> AsyncIterator[Served]:
    runner = web.AppRunner(app, shutdown_timeout=2.0, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        app[SEEN].let_go()
        await runner.cleanup()


METRICS_PATH = {"fastapi": "/metrics/", "aiohttp": "/metrics"}
