"""Admin listener: /healthz (process alive), /readyz (LND reachable, store writable), /metrics,
and the authenticated admin API under /admin/ (gateway.server.admin_api).

Kept off the public listener so probes, metrics and the API are never exposed to buyers.
The probes and /metrics need no credential: load balancers and Prometheus poll them,
and they reveal nothing a token could buy.
It reads the public app's LND client and store; its registry is the process's
own, or under `serve --workers N` one that sums every worker's metric files
(gateway.server.worker_admin).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.server.admin_api import (
    AdminAuth,
    ReloadHook,
    RevokedHook,
    RoutesHook,
    add_admin_api,
    auth_for,
    cache_dropper,
    config_of,
    routes_of,
)
from gateway.server.admin_sessions import CloseHook, seller_closer
from gateway.server.keys import BACKEND_KEY, METRICS_KEY, PUBLIC_APP_KEY, STORE_KEY
from gateway.store.types import StoreError

READY_TIMEOUT = 3.0
log = logging.getLogger("gateway.readiness")
LAST_READINESS_KEY = web.AppKey("last_readiness", dict)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
EXTRA_CHECKS_KEY = web.AppKey[Callable[[], dict[str, str]]]("extra_checks")


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readiness(public: web.Application) -> dict[str, str]:
    """Lightning backend and store checks, each "ok" or a secret-free reason."""
    checks: dict[str, str] = {}
    health = await public[BACKEND_KEY].health(READY_TIMEOUT)
    checks["lnd"] = health.detail
    public[METRICS_KEY].lnd_up.set(1 if checks["lnd"] == "ok" else 0)
    try:
        await asyncio.wait_for(public[STORE_KEY].check_writable(), READY_TIMEOUT)
        checks["store"] = "ok"
    except StoreError as exc:  # the adapters' messages carry no secrets
        checks["store"] = f"not writable: {exc}"
    except TimeoutError:
        checks["store"] = f"not writable: no answer within {READY_TIMEOUT:g} s"
    return checks


async def readyz(request: web.Request) -> web.Response:
    checks = await readiness(request.app[PUBLIC_APP_KEY])
    checks.update(request.app[EXTRA_CHECKS_KEY]())
    ready = all(v == "ok" for v in checks.values())
    log_readiness_change(request.app, checks)
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


def log_readiness_change(app: web.Application, checks: dict[str, str]) -> None:
    """Say why the gateway is not ready, once per change (not on every probe)."""
    last = app[LAST_READINESS_KEY]
    if checks == last:
        return
    last.clear()
    last.update(checks)
    failing = {name: value for name, value in checks.items() if value != "ok"}
    if failing:
        detail = "; ".join(f"{name}: {value}" for name, value in sorted(failing.items()))
        log.error("not ready", extra={"error": detail})
    else:
        log.info("ready")


async def metrics(request: web.Request) -> web.Response:
    source = request.app[PUBLIC_APP_KEY].get(METRICS_KEY)
    if source is not None:
        source.flush()  # this process's counts of this very loop iteration, if any
    registry = request.app[REGISTRY_KEY]
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _no_extra_checks() -> dict[str, str]:
    return {}


_FROM_SOURCE: None = None  # "derive from `source`" (only a public app has what it takes)


def create_admin_app(
    source: web.Application | None,
    registry: CollectorRegistry,
    *,
    contexts: Sequence[Callable[[web.Application], AsyncIterator[None]]] = (),
    extra_checks: Callable[[], dict[str, str]] = _no_extra_checks,
    auth: AdminAuth | None = _FROM_SOURCE,
    routes: RoutesHook | None = _FROM_SOURCE,
    reload: ReloadHook | None = None,
    revoked: RevokedHook | None = _FROM_SOURCE,
    sessions: CloseHook | None = _FROM_SOURCE,
) -> web.Application:
    """`source` holds the Lightning backend, store and metrics the probes use (BACKEND_KEY,
    STORE_KEY, METRICS_KEY): the public app; None for an admin app that opens its own
    with `contexts` (cleanup contexts) and passes every admin API hook itself.
    `extra_checks` adds readiness checks (a worker's: every worker listening).

    The admin API's hooks default to what a public `source` offers: the bearer
    secret file from its config (`admin.token_file`), its current routes, and
    dropping its verified-credential cache after a revocation. `reload` has no
    default (GatewayServer passes its own, or under `serve --workers N` one that asks
    the supervisor to reload every worker); without it POST /admin/reload answers 501.
    `sessions` closes a Payment-scheme session (default: the public app's running
    seller). With no token file the API is off.
    """
    app = web.Application()
    store_source = source if source is not None else app
    if source is not None:
        auth = auth if auth is not None else auth_for(config_of(source))
        routes = routes if routes is not None else routes_of(source)
        revoked = revoked if revoked is not None else cache_dropper(source)
        sessions = sessions if sessions is not None else seller_closer(source)
    add_admin_api(
        app,
        store_source,
        auth=auth,
        routes=routes,
        reload=reload,
        revoked=revoked,
        sessions=sessions,
    )
    app[PUBLIC_APP_KEY] = store_source
    app.cleanup_ctx.extend(contexts)
    app[EXTRA_CHECKS_KEY] = extra_checks
    app[REGISTRY_KEY] = registry
    app[LAST_READINESS_KEY] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
