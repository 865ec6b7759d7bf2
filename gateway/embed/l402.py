"""`L402`: one seller inside a Python web app, on the proxy's core, store, LND client and metrics.

    seller = L402.from_config("routes.yaml")                  # embedded mode of the loader
    seller = L402.from_routes([PricedRoute(...)], lnd=LndSettings(...), store_url="sqlite:...")

    app = web.Application(); seller.setup_aiohttp(app)        # aiohttp
    app.add_middleware(L402Middleware, paywall=seller)        # Starlette / FastAPI

The seller is the proxy's pieces, opened by the proxy's own lifecycle
(gateway.paywall.lifecycle): the decision, the services, the store, the
Lightning backend with its metrics observer, the usage flusher, and, as
leader-locked background tasks, the settlement follower (revenue metrics) and
the token pruner. `start()` opens them and `stop()` closes them; the
frameworks' lifecycles call both (aiohttp cleanup context, ASGI lifespan).
Metrics go to this seller's registry: serving them is the app's choice
(`metrics_asgi_app()`, `aiohttp_metrics`), preferably not on a public listener.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.exposition import make_asgi_app

from gateway.config import load_config
from gateway.config.model import GatewayConfig
from gateway.embed import aiohttp_embed
from gateway.embed.gate import Gate
from gateway.embed.settings import LndSettings, PricedRoute, build_config
from gateway.lightning.backend import Backend
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.decision import Paywall
from gateway.paywall.lifecycle import running_seller
from gateway.paywall.routes import RouteHolder, RuntimeRoutes
from gateway.store.roles import Store


class L402:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics | None = None,
        lightning: Backend | None = None,
        store: Store | None = None,
        follow_settlements: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`config` as the loader made it in embedded mode (use the class methods).

        An injected `lightning` backend or `store` is the caller's to close; `clock`
        (wall time) is injectable so tests move past token expiry without waiting.
        """
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.metrics.declare_routes(list(config.routes.names))
        routes = RouteHolder(RuntimeRoutes.from_config(config))
        self.gate = Gate(Paywall(routes, self.metrics))
        self._backend = lightning
        self._store = store
        self._follow_settlements = follow_settlements
        self._clock = clock
        self._stack: AsyncExitStack | None = None

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, check_files: bool = True, **kw: Any
    ) -> L402:
        """A routes.yaml read in embedded mode: no `upstream`, no proxy-only keys.

        Raises ConfigErrors (file:line: field: message) like `l402-gateway check-config`.
        """
        return cls(load_config(path, check_files=check_files, embedded=True), **kw)

    @classmethod
    def from_routes(
        cls,
        routes: Sequence[PricedRoute | Mapping[str, Any]],
        *,
        lnd: LndSettings,
        store_url: str,
        options: Mapping[str, Any] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        check_files: bool = True,
        **kw: Any,
    ) -> L402:
        """Routes from code, validated by the routes.yaml loader (gateway.embed.settings)."""
        config = build_config(
            routes,
            lnd=lnd,
            store_url=store_url,
            options=options,
            base_dir=base_dir,
            check_files=check_files,
        )
        return cls(config, **kw)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def running(self) -> bool:
        return self._stack is not None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and the LND client, attach the services, start background tasks.

        Raises what opening raised (StoreError, OSError for an unreadable LND
        file, ...), with everything opened so far closed again.
        """
        if self._stack is not None:
            raise RuntimeError("this L402 seller is already running")
        stack = AsyncExitStack()
        try:
            await self._open(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        """Refuse new sales (503), then flush usage, stop tasks, close LND and the store."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _open(self, stack: AsyncExitStack) -> None:
        seller = await stack.enter_async_context(
            running_seller(
                self.config,
                self.metrics,
                store=self._store,
                backend=self._backend,
                follow_settlements=self._follow_settlements,
                clock=self._clock,
            )
        )
        self.gate.paywall.attach(seller.services)
        stack.callback(self.gate.paywall.detach)

    # -- aiohttp ---------------------------------------------------------------------

    def aiohttp_middleware(self) -> Middleware:
        return aiohttp_embed.middleware(self.gate)

    async def aiohttp_cleanup_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`: running while the app runs."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def setup_aiohttp(self, app: web.Application) -> None:
        """Add the middleware (innermost, next to the handlers), the hook that settles
        answers the handlers send themselves, and the cleanup context."""
        app.middlewares.append(self.aiohttp_middleware())
        app.on_response_prepare.append(aiohttp_embed.settle_on_prepare)
        app.cleanup_ctx.append(self.aiohttp_cleanup_ctx)

    async def aiohttp_metrics(self, _request: web.Request) -> web.Response:
        """A handler serving this seller's metrics (Prometheus text format)."""
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # -- ASGI ------------------------------------------------------------------------

    def metrics_asgi_app(self) -> Callable[..., Coroutine[Any, Any, None]]:
        """An ASGI app serving this seller's metrics (e.g. `app.mount("/metrics", ...)`)."""
        return make_asgi_app(registry=self.registry)
