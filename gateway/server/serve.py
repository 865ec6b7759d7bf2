"""Run the public and admin listeners: signals, SIGHUP reload, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.config import load_config
from gateway.config.errors import ConfigErrors
from gateway.config.model import GatewayConfig
from gateway.lightning import LndClient
from gateway.metrics import GatewayMetrics
from gateway.server.admin import create_admin_app
from gateway.server.app import create_app
from gateway.server.keys import AUTH_KEY, ISSUER_KEY, ROUTES_KEY
from gateway.server.runtime import RuntimeRoutes
from gateway.store.base import TokenStore

log = logging.getLogger("gateway.serve")
SHUTDOWN_TIMEOUT = 30.0


class GatewayServer:
    """Both listeners of one gateway process; `start()` returns once they accept."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics | None = None,
        store: TokenStore | None = None,
        lnd: LndClient | None = None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.app = create_app(config, self.metrics, store=store, lnd=lnd, clock=clock)
        self.admin = create_admin_app(self.app)
        self._runners = [
            web.AppRunner(self.app, access_log=None, shutdown_timeout=shutdown_timeout),
            web.AppRunner(self.admin, access_log=None, shutdown_timeout=5.0),
        ]
        self.public_port = 0
        self.admin_port = 0

    async def start(self) -> None:
        listeners = (self.config.listen.public, self.config.listen.admin)
        ports = []
        for runner, listener in zip(self._runners, listeners, strict=True):
            await runner.setup()
            site = web.TCPSite(runner, listener.host, listener.port, reuse_address=True)
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None) or []
            ports.append(sockets[0].getsockname()[1] if sockets else listener.port)
        self.public_port, self.admin_port = ports

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the timeout), then clean up."""
        for runner in reversed(self._runners):
            await runner.cleanup()

    def reload(self, path: Path) -> bool:
        """Swap in a new routes.yaml; an invalid file keeps the running config."""
        try:
            config = load_config(path)
            routes = RuntimeRoutes.from_config(config)
        except (ConfigErrors, ValueError) as exc:
            self.metrics.config_reloads.labels(result="error").inc()
            log.error(
                "config reload refused; keeping the running config",
                extra={"config": str(path), "error": str(exc)},
            )
            return False
        if (config.listen, config.lnd, config.store) != (
            self.config.listen,
            self.config.lnd,
            self.config.store,
        ):
            log.warning("listener, LND and store changes need a restart; routes reloaded")
        self.app[ROUTES_KEY].current = routes
        self.app[AUTH_KEY].cache.clear()
        self.app[ISSUER_KEY].set_limit(config.challenge_rate_limit)
        self.metrics.declare_routes(list(config.routes.names))
        self.metrics.config_reloads.labels(result="ok").inc()
        log.info("config reloaded", extra={"config": str(path)})
        return True


async def serve(path: Path) -> None:
    config = load_config(path)
    server = GatewayServer(config)
    await server.start()
    log.info(
        "gateway listening",
        extra={"config": f"public={config.listen.public} admin={config.listen.admin}"},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload, path)
    try:
        await stop.wait()
    finally:
        log.info("shutting down; finishing in-flight requests")
        await server.stop()
