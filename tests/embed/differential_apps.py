"""Apps for the embedded differential test: each built bare and with the L402 middleware.

Three real apps whose routers decide differently: FastAPI (with a Starlette
sub-app under `Mount("/v1", ...)` that carries its own middleware and seller,
its routes relative to the mount), a plain Starlette app, and an aiohttp app
with a sub-app under `add_subapp("/v1", ...)` that carries its own seller.
Handlers accept the methods real apps give them: aiohttp's `add_get` and
Starlette's GET routes also run for HEAD, `add_route("*")` and
`api_route(methods=[..., "OPTIONS"])` run for OPTIONS. Every handler records
its name, so a test can tell which handler, priced or free, answered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.embed import L402, L402Middleware, PricedRoute

# The outer app's routes (paths as its router matches them, root_path excluded).
OUTER_ROUTES = [
    PricedRoute("free", "^/free", price_sats=0),
    PricedRoute("report", "^/report$", price_sats=10),
    PricedRoute("star", "^/star$", price_sats=10),  # every method
    PricedRoute("items", "^/items/", price_sats=10, methods=["GET"]),
]
# The mounted sub-app's own seller: paths relative to the mount.
SUB_ROUTES = [PricedRoute("sub-report", "^/report$", price_sats=10)]
PRICED = frozenset({"report", "star", "items", "sub-report"})


@dataclass
class Calls:
    """Which handler ran, by name (a priced handler's name is its route's)."""

    seen: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> Counter[str]:
        return Counter(self.seen)


def _body(name: str) -> dict[str, Any]:
    return {"handler": name, "content": "priced" if name in PRICED else "free"}


# -- FastAPI with a mounted Starlette sub-app -------------------------------------------


def starlette_sub(calls: Calls, seller: L402 | None) -> Starlette:
    async def report(request: Request) -> Response:
        calls.seen["sub-report"] += 1
        return JSONResponse(_body("sub-report"))

    middleware = [] if seller is None else [Middleware(L402Middleware, paywall=seller)]
    return Starlette(routes=[Route("/report", report, methods=["GET"])], middleware=middleware)


def fastapi_app(calls: Calls, seller: L402 | None, sub_seller: L402 | None) -> FastAPI:
    app = FastAPI()
    if seller is not None:
        app.add_middleware(L402Middleware, paywall=seller)

    @app.get("/report")
    async def report() -> dict[str, Any]:
        calls.seen["report"] += 1
        return _body("report")

    @app.api_route("/star", methods=["GET", "POST", "OPTIONS"])
    async def star() -> dict[str, Any]:
        calls.seen["star"] += 1
        return _body("star")

    @app.api_route("/items/{item}", methods=["GET", "HEAD", "OPTIONS"])
    async def items(item: str) -> dict[str, Any]:
        calls.seen["items"] += 1
        return _body("items")

    @app.api_route("/free", methods=["GET", "HEAD", "POST", "OPTIONS"])
    async def free() -> dict[str, Any]:
        calls.seen["free"] += 1
        return _body("free")

    app.mount("/v1", starlette_sub(calls, sub_seller))
    return app


# -- plain Starlette ----------------------------------------------------------------------


def starlette_app(calls: Calls, seller: L402 | None) -> Starlette:
    def handler(name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            calls.seen[name] += 1
            return JSONResponse(_body(name))

        return endpoint

    routes = [
        Route("/report", handler("report"), methods=["GET"]),  # Starlette adds HEAD
        Route("/star", handler("star"), methods=["GET", "POST", "OPTIONS", "PUT"]),
        Route("/items/{item}", handler("items"), methods=["GET"]),
        Route("/free", handler("free"), methods=["GET", "POST", "OPTIONS"]),
    ]
    middleware = [] if seller is None else [Middleware(L402Middleware, paywall=seller)]
    return Starlette(routes=routes, middleware=middleware)


# -- aiohttp with a sub-app -----------------------------------------------------------------

CALLS = web.AppKey("calls", Calls)


def _aiohttp_handler(name: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        request.app[CALLS].seen[name] += 1
        return web.json_response(_body(name))

    return handle


def aiohttp_app(calls: Calls, seller: L402 | None, sub_seller: L402 | None) -> web.Application:
    app = web.Application()
    app[CALLS] = calls
    if seller is not None:
        seller.setup_aiohttp(app)
    app.router.add_get("/report", _aiohttp_handler("report"))  # and HEAD
    app.router.add_route("*", "/star", _aiohttp_handler("star"))  # every method
    app.router.add_get("/items/{item}", _aiohttp_handler("items"))
    app.router.add_route("OPTIONS", "/items/{item}", _aiohttp_handler("items"))
    app.router.add_route("*", "/free", _aiohttp_handler("free"))
    sub = web.Application()
    sub[CALLS] = calls
    if sub_seller is not None:
        sub_seller.setup_aiohttp(sub)  # routes relative to the sub-app's prefix
    sub.router.add_get("/report", _aiohttp_handler("sub-report"))
    app.add_subapp("/v1", sub)
    return app
