"""The admin API: tokens, revocation, the revenue report, routes and reload, as JSON.

It lives on the admin listener only (never the public one) under `/admin/`,
and every call needs `Authorization: Bearer <secret>`, the secret being the
content of `admin.token_file` (docs/decisions.md: a file, not a macaroon).
A refused call gets a bare 401: no hint whether the header was missing,
malformed or wrong. The probes and /metrics stay open (admin.py).

The API reads the store through the roles it needs (TokenCatalog,
Revocations, UsageLedger) and is told by hooks, not by reaching into the
public app, what the current routes are, how to reload them and what to do
after a revocation: in one process those act on the public app; under a
worker supervisor they signal the workers.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from gateway.config import ConfigErrors, load_config
from gateway.config.admin import AdminTokenError, read_admin_token
from gateway.config.model import GatewayConfig, RouteTable
from gateway.server.admin_sessions import CloseHook, add_session_routes
from gateway.server.admin_wire import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Cursor,
    WireError,
    parse_id,
    report_to_json,
    route_to_json,
    token_to_json,
)
from gateway.server.edge import edge_of
from gateway.server.keys import HANDLER_KEY, ROUTES_KEY, STORE_KEY
from gateway.server.targets import build_targets
from gateway.store.roles import Revocations, TokenCatalog, UsageLedger
from gateway.store.types import StoreError

log = logging.getLogger("gateway.admin")
PREFIX = "/admin/"
MAX_REPORT_DAYS = 3660


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: `routes` in force after it, or the errors that kept the old ones."""

    ok: bool
    routes: int = 0
    errors: tuple[str, ...] = ()


ReloadHook = Callable[[], Awaitable[ReloadResult]]
RoutesHook = Callable[[], RouteTable]
RevokedHook = Callable[[], Awaitable[bool]]  # True when cached credentials were dropped


class AdminStore(TokenCatalog, Revocations, UsageLedger, Protocol):
    """The store roles the admin API uses."""


class AdminAuth:
    """Checks bearer secrets against the token file, re-read on every call.

    Re-reading makes rotation a file write (no restart) and keeps the 0600
    check in force; an admin call is rare enough that a stat and a read cost
    nothing. Both sides are hashed before the constant-time compare, so
    neither the content nor the length of the secret leaks through timing.
    """

    def __init__(self, token_file: Path) -> None:
        self.token_file = token_file

    def allows(self, authorization: str | None) -> bool:
        """Raises AdminTokenError when the file itself is unusable (our fault, not theirs)."""
        expected = sha256(read_admin_token(self.token_file)).digest()
        scheme, _, presented = (authorization or "").partition(" ")
        offered = sha256(presented.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(expected, offered) and scheme.lower() == "bearer"


@dataclass
class AdminApi:
    source: web.Application
    auth: AdminAuth
    routes: RoutesHook | None
    reload: ReloadHook | None
    revoked: RevokedHook | None

    @property
    def store(self) -> AdminStore:
        return self.source[STORE_KEY]


API_KEY = web.AppKey("admin_api", AdminApi)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="l402-gateway admin"'}


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer check for /admin/*; store failures become 503 with the store's secret-free reason.

    Also marks the request in progress on its edge connection, so the admin
    listener's idle deadline does not cut a slow store scan.
    """
    if not request.path.startswith(PREFIX):
        return await handler(request)
    api = request.app.get(API_KEY)
    if api is None:
        return _error(404, "the admin API is off: set admin.token_file in routes.yaml")
    try:
        allowed = api.auth.allows(request.headers.get("Authorization"))
    except AdminTokenError as exc:
        log.error("admin API refused every call", extra={"error": str(exc)})
        return _error(503, "admin API unavailable: the token file is unusable (see the log)")
    if not allowed:
        return web.json_response(
            {"error": "unauthorized"}, status=401, headers=UNAUTHORIZED_HEADERS
        )
    edge = edge_of(request.transport)
    if edge is not None:
        edge.begin()
    try:
        return await handler(request)
    except StoreError as exc:
        return _error(503, f"store unavailable: {exc}")
    except WireError as exc:
        return _error(400, str(exc))
    finally:
        if edge is not None:
            edge.end()


def _int_param(request: web.Request, name: str, default: int | None, high: int) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise WireError(f"{name} must be an integer from 1 to {high}")
    return int(text)


async def list_tokens(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    limit = _int_param(request, "limit", DEFAULT_PAGE, MAX_PAGE) or DEFAULT_PAGE
    cursor_text = request.query.get("cursor")
    cursor = Cursor.decode(cursor_text) if cursor_text else None
    route = request.query.get("route") or None
    # One row more than asked says whether a next page exists without a second query.
    rows = await api.store.list_tokens(
        route=route,
        limit=limit + 1,
        before=(cursor.created_at, cursor.token_id) if cursor else None,
    )
    page = rows[:limit]
    more = len(rows) > limit
    return web.json_response(
        {
            "tokens": [token_to_json(info) for info in page],
            "next_cursor": Cursor.after(page[-1]).encode() if more and page else None,
        }
    )


async def show_token(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    info = await api.store.find_token(parse_id(request.match_info["id"]))
    if info is None:
        return _error(404, "no token with that id or payment hash")
    return web.json_response({"token": token_to_json(info)})


async def revoke_token(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    info = await api.store.find_token(parse_id(request.match_info["id"]))
    if info is None:
        return _error(404, "no token with that id or payment hash")
    if info.revoked_at is not None or not await api.store.revoke(info.token_id.hex()):
        return _error(409, "already revoked", token=token_to_json(info))
    cleared = await api.revoked() if api.revoked is not None else False
    log.warning(
        "token revoked through the admin API",
        extra={"token_id": info.token_id.hex(), "route": info.route},
    )
    after = await api.store.find_token(info.token_id)
    return web.json_response(
        {"token": token_to_json(after or info), "revoked": True, "cache_cleared": cleared}
    )


async def report(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    days = _int_param(request, "days", None, MAX_REPORT_DAYS)
    rows = await api.store.revenue_report(days)
    return web.json_response({"days": days, "rows": [report_to_json(r) for r in rows]})


async def current_routes(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    if api.routes is None:
        return _error(501, "this listener does not know the routes")
    return web.json_response({"routes": [route_to_json(r) for r in api.routes().routes]})


async def reload_config(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    if api.reload is None:
        return _error(501, "this listener cannot reload; send SIGHUP to the gateway")
    result = await api.reload()
    log.warning("config reload requested through the admin API", extra={"outcome": result.ok})
    body = {"ok": result.ok, "routes": result.routes, "errors": list(result.errors)}
    return web.json_response(body, status=200 if result.ok else 422)


def add_admin_api(
    app: web.Application,
    source: web.Application,
    *,
    auth: AdminAuth | None,
    routes: RoutesHook | None,
    reload: ReloadHook | None,
    revoked: RevokedHook | None,
    sessions: CloseHook | None = None,
) -> None:
    """Mount the API on the admin app; with `auth` None every /admin/ call answers 404.

    `sessions` closes a Payment-scheme session for POST /admin/sessions/{id}/close
    (gateway.server.admin_sessions); None: that call answers 501."""
    app.middlewares.append(admin_guard)
    if auth is None:
        return
    app[API_KEY] = AdminApi(source, auth, routes, reload, revoked)
    app.router.add_get("/admin/tokens", list_tokens)
    app.router.add_get("/admin/tokens/{id}", show_token)
    app.router.add_post("/admin/tokens/{id}/revoke", revoke_token)
    app.router.add_get("/admin/report", report)
    app.router.add_get("/admin/routes", current_routes)
    app.router.add_post("/admin/reload", reload_config)
    add_session_routes(app, source, sessions)  # /admin/sessions (Payment-scheme sessions)


# --- hooks for one gateway process (the source is the public app) -------------------


def config_of(source: web.Application) -> GatewayConfig | None:
    holder = source.get(ROUTES_KEY)
    return holder.current.config if holder is not None else None


def auth_for(config: GatewayConfig | None) -> AdminAuth | None:
    if config is None or config.admin.token_file is None:
        return None
    return AdminAuth(config.admin.token_file)


def routes_of(source: web.Application) -> RoutesHook | None:
    holder = source.get(ROUTES_KEY)
    if holder is None:
        return None
    return lambda: holder.current.config.routes


def cache_dropper(source: web.Application) -> RevokedHook | None:
    """After a revocation, forget verified credentials so the token is refused at once."""
    handler = source.get(HANDLER_KEY)
    if handler is None:
        return None

    async def drop() -> bool:
        try:
            handler.paywall.services.auth.cache.clear()
        except RuntimeError:  # not started yet: nothing cached
            return False
        return True

    return drop


class ReloadingServer(Protocol):
    """What `server_reloader` needs of gateway.server.serve.GatewayServer."""

    config: GatewayConfig
    app: web.Application

    def reload(self, path: Path) -> bool: ...


def server_reloader(server: ReloadingServer) -> ReloadHook:
    """One process's reload hook: the same reload as SIGHUP, with a refused file's errors.

    GatewayServer wires it as
    `create_admin_app(self.app, registry, reload=server_reloader(self))`.
    """

    async def hook() -> ReloadResult:
        path = server.config.source
        ok = server.reload(path)
        routes = len(server.app[ROUTES_KEY].current.config.routes)
        if ok:
            return ReloadResult(True, routes=routes)
        return ReloadResult(False, routes=routes, errors=tuple(explain_refusal(path)))

    return hook


def explain_refusal(path: Path) -> list[str]:
    """Why `path` does not load (file:line: field: message lines) for a refused reload."""
    try:
        build_targets(load_config(path))
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    except ValueError as exc:
        return [f"{path}: {exc}"]
    return [f"{path}: the reload was refused; see the gateway log"]
