"""Run a gateway process: its listeners, SIGHUP reload and graceful shutdown.

One process serves the public and the admin listener (`--workers 1`, and
every test). With more workers (gateway.server.workers) each worker serves
both on SO_REUSEPORT sockets, its admin listener speaking for every worker
(gateway.server.worker_admin).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.config import load_config
from gateway.config.errors import ConfigErrors
from gateway.config.model import GatewayConfig, Listener
from gateway.config.restart import restart_needed
from gateway.lightning.backend import Backend
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.redaction import register_secrets
from gateway.paywall.routes import RuntimeRoutes
from gateway.server.admin import create_admin_app, log_readiness_change, readiness
from gateway.server.admin_api import cache_dropper, server_reloader
from gateway.server.app import create_app
from gateway.server.edge import (
    ADMIN_MAX_CONNECTIONS,
    ConnectionGate,
    default_max_connections,
    raise_descriptor_limit,
    start_listener,
)
from gateway.server.keys import ENTRY_KEY, HANDLER_KEY, ROUTES_KEY, TARGETS_KEY
from gateway.store.roles import Store

if TYPE_CHECKING:
    from gateway.h2engine.proxy import H2Proxy
    from gateway.server.worker_admin import SupervisorLink

log = logging.getLogger("gateway.serve")
SHUTDOWN_TIMEOUT = 30.0
ADMIN_TIMEOUT = 5.0


@dataclass
class Listening:
    """One listener: its app runner, address, connection cap and deadlines."""

    runner: web.BaseRunner
    address: Listener
    gate: ConnectionGate
    header_timeout: float
    keepalive_timeout: float
    handler_settings: dict[str, Any]
    reuse_port: bool = False
    server: asyncio.Server | None = None

    http2: Callable[[], asyncio.Protocol] | None = None  # the HTTP/2 engine, public only

    async def start(self) -> int:
        await self.runner.setup()
        self.server = await start_listener(
            self.runner,
            self.address.host,
            self.address.port,
            gate=self.gate,
            header_timeout=self.header_timeout,
            keepalive_timeout=self.keepalive_timeout,
            handler_kwargs=self.handler_settings,
            reuse_port=self.reuse_port,
            http2=self.http2,
        )
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self.address.port

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def finish(self) -> None:
        await self.runner.cleanup()
        if self.server is not None:
            await self.server.wait_closed()


def admin_listening(
    app: web.Application, address: Listener, *, reuse_port: bool = False
) -> Listening:
    return Listening(
        web.AppRunner(app, access_log=None, shutdown_timeout=ADMIN_TIMEOUT),
        address,
        ConnectionGate(ADMIN_MAX_CONNECTIONS),
        ADMIN_TIMEOUT,
        ADMIN_TIMEOUT,
        {"keepalive_timeout": ADMIN_TIMEOUT},
        reuse_port=reuse_port,
    )


def upstream_secrets(config: GatewayConfig) -> list[str]:
    """The values of every route's `upstream_headers`: the operator's secrets for its
    upstreams, redacted from every log line (gateway.observability.redaction)."""
    return [value for route in config.routes.routes for _, value in route.upstream_headers]


class PublicRunner(web.ServerRunner):
    """The public app's lifecycle (start-up and cleanup contexts, shutdown signal) around
    aiohttp's low-level server for its requests (gateway.server.entry), as `AppRunner`
    runs an app around the app's own dispatch."""

    __slots__ = ("_app",)

    def __init__(self, app: web.Application, *, shutdown_timeout: float) -> None:
        super().__init__(
            app[ENTRY_KEY].server(handler_cancellation=True), shutdown_timeout=shutdown_timeout
        )
        self._app = app

    async def _make_server(self) -> web.Server:
        self._app.on_startup.freeze()
        await self._app.startup()
        self._app.freeze()
        return await super()._make_server()

    async def shutdown(self) -> None:
        await self._app.shutdown()

    async def _cleanup_server(self) -> None:
        await self._app.cleanup()


class GatewayServer:
    """The listeners of one gateway process; `start()` returns once they accept."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics | None = None,
        store: Store | None = None,
        backend: Backend | None = None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        clock: Callable[[], float] = time.time,
        follow_settlements: bool = True,
        serve_admin: bool = True,
        reuse_port: bool = False,
        supervisor: SupervisorLink | None = None,
    ) -> None:
        """`supervisor`: this process is one of `serve --workers N`'s workers (its admin
        listener speaks for every worker: gateway.server.worker_admin)."""
        self.config = config
        register_secrets(upstream_secrets(config))
        self.metrics = metrics or GatewayMetrics()
        self.app = create_app(
            config,
            self.metrics,
            store=store,
            backend=backend,
            clock=clock,
            follow_settlements=follow_settlements,
        )
        if supervisor is None:
            self.admin = create_admin_app(
                self.app, self.metrics.registry, reload=server_reloader(self)
            )
        else:
            self.admin = create_admin_app(
                self.app,
                supervisor.registry(),
                extra_checks=supervisor.workers_check,
                reload=supervisor.reload_hook(config),
                revoked=supervisor.revoked_hook(cache_dropper(self.app)),
            )
        listen = config.listen
        # The public runner cancels a handler whose client went away (leases are given
        # back, gateway.paywall.leases) and never drains an unread body (lingering 0):
        # an unpaid upload is not read, the connection is closed after the answer.
        public = PublicRunner(self.app, shutdown_timeout=shutdown_timeout)
        self.public = Listening(
            public,
            listen.public,
            ConnectionGate(listen.max_connections or 1),
            listen.header_timeout_seconds,
            listen.keepalive_timeout_seconds,
            {"lingering_time": 0, "keepalive_timeout": listen.keepalive_timeout_seconds},
            reuse_port=reuse_port,
        )
        self._listening = [self.public]
        self.h2: H2Proxy | None = None
        self._shutdown_timeout = shutdown_timeout
        if serve_admin:
            self._listening.append(
                admin_listening(self.admin, listen.admin, reuse_port=supervisor is not None)
            )
        self.first_readiness: asyncio.Task[None] | None = None  # the check at start
        self.public_port = 0
        self.admin_port = 0

    @property
    def public_gate(self) -> ConnectionGate:
        return self.public.gate

    async def start(self) -> None:
        listen = self.config.listen
        nofile = raise_descriptor_limit()
        self.public.gate.limit = listen.max_connections or default_max_connections(nofile)
        # gRPC over HTTP/2 on the public port, decided by the same paywall.
        self.public.http2 = self._http2_connection  # the engine loads on first use
        ports = [await listening.start() for listening in self._listening]
        self.public_port = ports[0]
        self.admin_port = ports[1] if len(ports) > 1 else 0
        log.info(
            "gateway listening",
            extra={
                "config": f"public={listen.public} admin={listen.admin if self.admin_port else '-'}"
                f" max_connections={self.public.gate.limit} nofile={nofile}"
            },
        )
        # A gateway that starts unable to write its store or reach LND says so now, not only
        # when a probe asks /readyz; the check runs beside serving (it also opens the LND
        # connection the first challenge will use) rather than delaying it.
        self.first_readiness = asyncio.create_task(self._first_readiness())

    async def _first_readiness(self) -> None:
        log_readiness_change(self.admin, await readiness(self.app))

    def _http2_connection(self) -> asyncio.Protocol:
        """gRPC over HTTP/2 on the public port, decided by the same paywall. The engine is
        loaded with the first connection that opens with the HTTP/2 preface: most gateways
        never see one, and the first 402 need not wait for it."""
        if self.h2 is None:
            from gateway.h2engine.proxy import H2Proxy
            from gateway.server.h2_admission import H2Admission

            admission = H2Admission(self.app[HANDLER_KEY].paywall, self.app[TARGETS_KEY])
            self.h2 = H2Proxy(admission)
        return self.h2.connection()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the timeout), then clean up."""
        if self.first_readiness is not None:
            self.first_readiness.cancel()
        for listening in self._listening:
            listening.stop_accepting()
        draining = []
        if self.h2 is not None:  # GOAWAY to HTTP/2 clients; their open streams may finish
            draining.append(self.h2.drain(self._shutdown_timeout))
        draining.extend(listening.finish() for listening in reversed(self._listening))
        await asyncio.gather(*draining)
        if self.h2 is not None:
            await self.h2.close()
        self.metrics.flush()  # counts of the last requests (multiprocess: into their files)

    def reload(self, path: Path) -> bool:
        """Swap in a new routes.yaml; an invalid file keeps the running config."""
        try:
            config = load_config(path)
            register_secrets(upstream_secrets(config))
            routes = RuntimeRoutes.from_config(config)
            self.app[TARGETS_KEY].prepare(routes)
        except (ConfigErrors, ValueError) as exc:
            self.metrics.config_reloads.labels(result="error").inc()
            log.error(
                "config reload refused; keeping the running config",
                extra={"config": str(path), "error": str(exc)},
            )
            return False
        pending = restart_needed(self.config, config)
        if pending:
            log.warning(
                "these settings changed but need a restart to take effect; routes reloaded",
                extra={"config": ", ".join(pending)},
            )
        self.app[ROUTES_KEY].current = routes
        services = self.app[HANDLER_KEY].paywall.services
        services.auth.cache.clear()
        limit = config.challenge_rate_limit
        services.issuer.limiter.configure(limit.per_minute, limit.burst)
        self.metrics.declare_routes(list(config.routes.names))
        self.metrics.config_reloads.labels(result="ok").inc()
        log.info("config reloaded", extra={"config": str(path)})
        return True


async def serve(
    path: Path,
    *,
    serve_admin: bool = True,
    reuse_port: bool = False,
    on_listening: Callable[[], None] | None = None,
    supervisor: SupervisorLink | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads `path`.

    Signal handlers go in before the listeners start, so a SIGTERM that arrives
    while the gateway is still starting is a clean stop, not a kill.
    """
    config = load_config(path)
    server = GatewayServer(
        config, serve_admin=serve_admin, reuse_port=reuse_port, supervisor=supervisor
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload, path)
    try:
        await server.start()
        if on_listening is not None:
            on_listening()
        await stop.wait()
    finally:
        log.info("shutting down; finishing in-flight requests")
        await server.stop()
