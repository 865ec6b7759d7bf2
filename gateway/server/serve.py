"""Run the public and admin listeners: signals, SIGHUP reload, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.config import load_config
from gateway.config.errors import ConfigErrors
from gateway.config.model import GatewayConfig
from gateway.lightning import LndClient
from gateway.metrics import GatewayMetrics
from gateway.server.admin import create_admin_app, log_readiness_change, readiness
from gateway.server.app import create_app
from gateway.server.edge import (
    ADMIN_MAX_CONNECTIONS,
    ConnectionGate,
    default_max_connections,
    raise_descriptor_limit,
    start_listener,
)
from gateway.server.keys import HANDLER_KEY, ROUTES_KEY
from gateway.server.runtime import RuntimeRoutes
from gateway.store.roles import Store

log = logging.getLogger("gateway.serve")
SHUTDOWN_TIMEOUT = 30.0
ADMIN_TIMEOUT = 5.0


class GatewayServer:
    """Both listeners of one gateway process; `start()` returns once they accept."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics | None = None,
        store: Store | None = None,
        lnd: LndClient | None = None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        clock: Callable[[], float] = time.time,
        follow_settlements: bool = True,
    ) -> None:
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.app = create_app(
            config,
            self.metrics,
            store=store,
            lnd=lnd,
            clock=clock,
            follow_settlements=follow_settlements,
        )
        self.admin = create_admin_app(self.app)
        listen = config.listen
        # The public runner cancels a handler whose client went away (leases are given
        # back, gateway.server.leases) and never drains an unread body (lingering 0):
        # an unpaid upload is not read, the connection is closed after the answer.
        public_settings: dict[str, Any] = {
            "lingering_time": 0,
            "keepalive_timeout": listen.keepalive_timeout_seconds,
        }
        admin_settings: dict[str, Any] = {"keepalive_timeout": ADMIN_TIMEOUT}
        self._runners = [
            web.AppRunner(
                self.app,
                access_log=None,
                shutdown_timeout=shutdown_timeout,
                handler_cancellation=True,
            ),
            web.AppRunner(self.admin, access_log=None, shutdown_timeout=ADMIN_TIMEOUT),
        ]
        self._settings = [public_settings, admin_settings]
        self.public_gate = ConnectionGate(listen.max_connections or 1)
        self.admin_gate = ConnectionGate(ADMIN_MAX_CONNECTIONS)
        self._servers: list[asyncio.Server] = []
        self.public_port = 0
        self.admin_port = 0

    async def start(self) -> None:
        listen = self.config.listen
        nofile = raise_descriptor_limit()
        self.public_gate.limit = listen.max_connections or default_max_connections(nofile)
        plans = (
            (listen.public, self.public_gate, listen.header_timeout_seconds),
            (listen.admin, self.admin_gate, ADMIN_TIMEOUT),
        )
        ports = []
        for runner, settings, (listener, gate, header_timeout) in zip(
            self._runners, self._settings, plans, strict=True
        ):
            await runner.setup()
            server = await start_listener(
                runner,
                listener.host,
                listener.port,
                gate=gate,
                header_timeout=header_timeout,
                keepalive_timeout=settings["keepalive_timeout"],
                handler_kwargs=settings,
            )
            self._servers.append(server)
            ports.append(server.sockets[0].getsockname()[1] if server.sockets else listener.port)
        self.public_port, self.admin_port = ports
        log.info(
            "listening",
            extra={
                "config": f"public={listen.public} admin={listen.admin} "
                f"max_connections={self.public_gate.limit} nofile={nofile}"
            },
        )
        # A gateway that starts unable to write its store or reach LND says so now,
        # not only when a probe asks /readyz.
        log_readiness_change(self.admin, await readiness(self.app))

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the timeout), then clean up."""
        for server in self._servers:
            server.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        for server in self._servers:
            await server.wait_closed()

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
        services = self.app[HANDLER_KEY].services
        services.auth.cache.clear()
        limit = config.challenge_rate_limit
        services.issuer.limiter.configure(limit.per_minute, limit.burst)
        self.metrics.declare_routes(list(config.routes.names))
        self.metrics.config_reloads.labels(result="ok").inc()
        log.info("config reloaded", extra={"config": str(path)})
        return True


async def serve(path: Path) -> None:
    config = load_config(path)
    server = GatewayServer(config)
    await server.start()
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
