"""Application factory for the public listener.

The seller (store, Lightning backend, the paywall's services, background
jobs: gateway.paywall.lifecycle) and the upstream pool are opened in a
cleanup context (aiohttp's idiom: they need the running loop and must be
closed on shutdown); the request handler is built once and given its
collaborators when they exist. Tests and the rehearsal may inject an
already-open store or backend; the app then leaves closing them to the caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.config.model import GatewayConfig
from gateway.lightning.backend import Backend
from gateway.lightning.factory import open_backend
from gateway.observability.metrics import GatewayMetrics, backend_observer
from gateway.paywall.decision import Paywall
from gateway.paywall.lifecycle import running_seller
from gateway.paywall.routes import RouteHolder, RuntimeRoutes
from gateway.proxy import Proxy
from gateway.server.discovery_endpoint import DiscoveryHandler
from gateway.server.edge import UPSTREAM_POOL_LIMIT
from gateway.server.entry import PublicEntry
from gateway.server.forwarding import Forwarder
from gateway.server.handler import PublicHandler
from gateway.server.keys import (
    BACKEND_KEY,
    BACKGROUND_KEY,
    ENTRY_KEY,
    HANDLER_KEY,
    METRICS_KEY,
    ROUTES_KEY,
    STORE_KEY,
    TARGETS_KEY,
)
from gateway.server.targets import RouteTargets
from gateway.store import open_store
from gateway.store.roles import Store

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def _seller_ctx(
    config: GatewayConfig,
    store: Store | None,
    backend: Backend | None,
    clock: Callable[[], float],
    follow_settlements: bool,
) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        handler = app[HANDLER_KEY]
        proxy = Proxy.create(limit=UPSTREAM_POOL_LIMIT)
        try:
            async with running_seller(
                config,
                app[METRICS_KEY],
                store=store,
                backend=backend,
                follow_settlements=follow_settlements,
                clock=clock,
            ) as seller:
                app[STORE_KEY] = seller.store
                app[BACKEND_KEY] = seller.backend
                app[BACKGROUND_KEY] = seller.jobs
                handler.paywall.attach(seller.services)
                handler.attach(Forwarder(proxy, app[TARGETS_KEY]))
                yield
                handler.paywall.detach()
        finally:
            await proxy.close()

    return ctx


def store_context(config: GatewayConfig) -> CleanupCtx:
    """The store alone, as app[STORE_KEY] (the worker supervisor's admin app: /readyz)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(
            config.store.url, config.base_dir, timeout=config.store.timeout_seconds
        )
        app[STORE_KEY] = store
        try:
            yield
        finally:
            await store.close()

    return ctx


def backend_context(config: GatewayConfig, metrics: GatewayMetrics) -> CleanupCtx:
    """The Lightning backend alone, as app[BACKEND_KEY] (the supervisor's /readyz)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        backend = open_backend(config.lightning, backend_observer(metrics))
        app[BACKEND_KEY] = backend
        try:
            yield
        finally:
            await backend.close()

    return ctx


async def _close_websockets(app: web.Application) -> None:
    """on_shutdown runs before aiohttp waits for handlers: open WebSocket sessions end
    promptly with 1001 instead of holding the shutdown for its whole timeout."""
    forwarder = app[HANDLER_KEY].attached_forwarder
    if forwarder is not None:
        await forwarder.websockets.shutdown()


def create_app(
    config: GatewayConfig,
    metrics: GatewayMetrics | None = None,
    *,
    store: Store | None = None,
    backend: Backend | None = None,
    follow_settlements: bool = True,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The public listener's state and lifecycle; its requests go to `app[ENTRY_KEY]` on
    aiohttp's low-level server (gateway.server.entry), which never sends `100 Continue`
    before a request is admitted (gateway.server.forwarding). `clock` (wall time) is
    injectable so tests can move past token expiry without waiting.

    Raises ConfigErrors when a route's upstream TLS settings cannot be loaded."""
    metrics = metrics or GatewayMetrics()
    metrics.declare_routes(list(config.routes.names))
    routes = RouteHolder(RuntimeRoutes.from_config(config))
    targets = RouteTargets()
    targets.prepare(routes.current)
    handler = PublicHandler(Paywall(routes, metrics), discovery=DiscoveryHandler(routes))
    app = web.Application()
    app[METRICS_KEY] = metrics
    app[ROUTES_KEY] = routes
    app[TARGETS_KEY] = targets
    app[HANDLER_KEY] = handler
    app[ENTRY_KEY] = PublicEntry(
        handler, client_max_size=max((r.max_body_bytes for r in config.routes.routes), default=0)
    )
    app.on_shutdown.append(_close_websockets)
    app.cleanup_ctx.append(_seller_ctx(config, store, backend, clock, follow_settlements))
    return app
