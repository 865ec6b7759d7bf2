"""Application factory for the public listener.

The store, the LND channel and the upstream session are opened in cleanup
contexts (aiohttp's idiom: they need the running loop and must be closed on
shutdown); the request handler is built once and given its collaborators
when they exist. Tests and the rehearsal may inject an already-open store or
LND client; the app then leaves closing them to the caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.config.model import GatewayConfig
from gateway.jobs.runner import running, store_jobs
from gateway.l402.mint import InvoiceSource, Minter
from gateway.lightning import LndClient
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.challenges import ChallengeIssuer
from gateway.paywall.decision import Paywall, Services
from gateway.paywall.leases import LeaseKeeper
from gateway.paywall.ratelimit import (
    ChallengeLimiter,
    LocalChallengeLimiter,
    SharedChallengeLimiter,
)
from gateway.paywall.routes import RouteHolder, RuntimeRoutes
from gateway.paywall.usage import UsageCounter, run_flusher
from gateway.paywall.verifier import Authenticator, VerifiedCache
from gateway.pricer.hook import PriceHook
from gateway.proxy import Proxy
from gateway.server.cors import add_cors_headers
from gateway.server.discovery_endpoint import DiscoveryHandler
from gateway.server.edge import UPSTREAM_POOL_LIMIT
from gateway.server.errors import error_middleware
from gateway.server.forwarding import Forwarder
from gateway.server.handler import PublicHandler
from gateway.server.keys import HANDLER_KEY, LND_KEY, METRICS_KEY, ROUTES_KEY, STORE_KEY
from gateway.server.middleware import request_context
from gateway.store import open_store
from gateway.store.roles import Store

VERIFIED_CACHE_TTL = 60.0
BACKGROUND_KEY = web.AppKey[tuple[str, ...]]("background")  # the jobs running ("pruner", ...)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def lnd_observer(metrics: GatewayMetrics) -> Callable[[str, float, str | None], None]:
    """Feeds the LND client's call timings into the metrics (and the lnd_up gauge)."""
    unavailable = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}

    def observe(method: str, seconds: float, code: str | None) -> None:
        metrics.lnd_rpc_latency.labels(method=method).observe(seconds)
        if code is not None:
            metrics.lnd_rpc_errors.labels(method=method, code=code).inc()
        metrics.lnd_up.set(0 if code in unavailable else 1)

    return observe


def store_context(config: GatewayConfig, injected: Store | None) -> CleanupCtx:
    """Open the store (or use an injected one) as app[STORE_KEY]; close what it opened."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = injected or await open_store(
            config.store.url, config.base_dir, timeout=config.store.timeout_seconds
        )
        app[STORE_KEY] = store
        yield
        if injected is None:
            await store.close()

    return ctx


def lnd_context(config: GatewayConfig, injected: LndClient | None) -> CleanupCtx:
    """Connect to LND (or use an injected client) as app[LND_KEY]; close what it opened."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        lnd = injected or LndClient.connect(
            config.lnd.host,
            tls_cert=config.lnd.tls_cert,
            macaroon=config.lnd.macaroon,
            timeout=config.lnd.timeout_seconds,
            observer=lnd_observer(app[METRICS_KEY]),
        )
        app[LND_KEY] = lnd
        yield
        if injected is None:
            await lnd.close()

    return ctx


def build_services(
    config: GatewayConfig,
    store: Store,
    lnd: InvoiceSource,
    metrics: GatewayMetrics,
    clock: Callable[[], float],
    pricer: PriceHook,
) -> Services:
    """The handler's collaborators, wired once."""
    limit = config.challenge_rate_limit
    leases = LeaseKeeper(store, metrics, clock)
    return Services(
        auth=Authenticator(
            store, VerifiedCache(config.verified_cache_size, VERIFIED_CACHE_TTL), clock
        ),
        issuer=ChallengeIssuer(
            Minter(lnd, store),
            LocalChallengeLimiter(limit.per_minute, limit.burst),
            metrics,
            clock,
            pricer=pricer,
        ),
        leases=leases,
        usage=UsageCounter(),
    )


def challenge_limiter(config: GatewayConfig, store: Store) -> ChallengeLimiter:
    """Shared buckets when the store is shared (PostgreSQL: N replicas or workers must not
    give a client N allowances), per-process ones on SQLite (docs/decisions.md)."""
    limit = config.challenge_rate_limit
    if store.shares_rate_limits:
        return SharedChallengeLimiter(store, limit.per_minute, limit.burst)
    return LocalChallengeLimiter(limit.per_minute, limit.burst)


def _services_ctx(config: GatewayConfig, clock: Callable[[], float]) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        proxy = Proxy.create(limit=UPSTREAM_POOL_LIMIT)
        metrics = app[METRICS_KEY]
        pricer = PriceHook.create(metrics)
        services = build_services(config, app[STORE_KEY], app[LND_KEY], metrics, clock, pricer)
        handler = app[HANDLER_KEY]
        handler.paywall.attach(services)
        handler.attach(Forwarder(proxy, services.leases, metrics))
        async for _ in run_flusher(services.usage, app[STORE_KEY]):
            yield
        await proxy.close()
        await pricer.close()

    return ctx


def _background_ctx(config: GatewayConfig, clock: Callable[[], float], follow: bool) -> CleanupCtx:
    """Settlements and pruning, once per store across processes (gateway.jobs.runner)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        jobs = store_jobs(
            app[STORE_KEY],
            app[LND_KEY],
            app[METRICS_KEY],
            follow_settlements=follow,
            prune_after_days=config.store.prune_after_days,
            clock=clock,
        )
        async with running(jobs) as names:
            app[BACKGROUND_KEY] = names
            yield

    return ctx


async def _close_websockets(app: web.Application) -> None:
    """on_shutdown runs before aiohttp waits for handlers: open WebSocket sessions end
    promptly with 1001 instead of holding the shutdown for its whole timeout."""
    forwarder = app[HANDLER_KEY].attached_forwarder
    if forwarder is not None:
        await forwarder.websockets.shutdown()


async def _no_expect(_request: web.Request) -> None:
    """Never send `100 Continue` before the request is admitted (gateway.server.forwarding)."""


def create_app(
    config: GatewayConfig,
    metrics: GatewayMetrics | None = None,
    *,
    store: Store | None = None,
    lnd: LndClient | None = None,
    follow_settlements: bool = True,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """`clock` (wall time) is injectable so tests can move past token expiry without waiting."""
    metrics = metrics or GatewayMetrics()
    metrics.declare_routes(list(config.routes.names))
    routes = RouteHolder(RuntimeRoutes.from_config(config))
    handler = PublicHandler(Paywall(routes, metrics), discovery=DiscoveryHandler(routes))
    app = web.Application(
        middlewares=[request_context, error_middleware],
        client_max_size=max((r.max_body_bytes for r in config.routes.routes), default=0),
    )
    app[METRICS_KEY] = metrics
    app[ROUTES_KEY] = routes
    app[HANDLER_KEY] = handler
    app.on_response_prepare.append(add_cors_headers)
    app.on_shutdown.append(_close_websockets)
    app.cleanup_ctx.extend(
        [store_context(config, store), lnd_context(config, lnd), _services_ctx(config, clock)]
    )
    app.cleanup_ctx.append(_background_ctx(config, clock, follow_settlements))
    app.router.add_route("*", "/{tail:.*}", handler.handle, expect_handler=_no_expect)
    return app
