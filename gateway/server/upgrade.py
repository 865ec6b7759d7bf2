"""WebSocket upgrades on the public listener: the lease, the upstream handshake, the session.

An admitted upgrade (paid, or on a free route) goes: check the client's
handshake -> take a session slot -> open the upstream WebSocket within the
route's upstream timeout -> settle a single-use lease on the upstream's 101
(committed: one payment buys one session; a refusal, failure or timeout has
already released it) -> accept the client's upgrade with the subprotocol the
upstream chose -> relay (gateway.proxy.wsrelay) until a side closes.

A refused upgrade (any answer but 101) is a 502 and nothing of the
upstream's answer is passed on: a single-use token it released must not buy
an HTTP answer by adding `Upgrade: websocket` to a request.

Sessions are bounded in number (`max_sessions`, 503 + Retry-After beyond
it): each holds one public and one upstream connection for its whole life, on
a one-connection client session of its own so it never takes a slot of the
shared HTTP pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time

from aiohttp import WSCloseCode, web

from gateway.config.model import Route
from gateway.http.clientinfo import ClientInfo
from gateway.http.paths import NormalPath
from gateway.observability.metrics import GatewayMetrics, RouteSeries
from gateway.paywall.leases import Lease, LeaseKeeper
from gateway.paywall.routes import RouteRuntime
from gateway.proxy.errors import ProxyError, UpstreamTimeout
from gateway.proxy.websocket import (
    RelayLimits,
    UpgradeRefused,
    UpstreamSocket,
    check_handshake,
    connect_upstream,
)
from gateway.proxy.wsrelay import Ending, Relay, Summary
from gateway.server.edge import default_max_connections
from gateway.server.errors import RETRY_AFTER_SECONDS, GatewayError
from gateway.server.reqkeys import ERROR, OUTCOME, ROUTE, UPSTREAM_STATUS

log = logging.getLogger("gateway.websocket")

DEFAULT_IDLE_TIMEOUT_SECONDS = 300.0
DEFAULT_CLOSE_TIMEOUT_SECONDS = 5.0
_FAILED = frozenset({Ending.CLIENT_FAILED, Ending.UPSTREAM_FAILED})


def default_max_sessions() -> int:
    """A quarter of the public connections the descriptor limit allows (each session
    also holds an upstream descriptor)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, default_max_connections(soft) // 4)


class WebSocketCapacity(GatewayError):
    """`max_sessions` WebSocket sessions are open already; nothing was spent."""

    status = 503
    reason = "websocket_capacity"

    def __init__(self) -> None:
        super().__init__("too many WebSocket sessions open", retry_after=RETRY_AFTER_SECONDS)


def _failure_class(exc: ProxyError) -> str:
    if isinstance(exc, UpgradeRefused) and exc.upstream_status != 101:
        return f"{exc.upstream_status // 100}xx"
    return "timeout" if isinstance(exc, UpstreamTimeout) else "error"


class WebSocketForwarder:
    """Forwards admitted WebSocket upgrades; one per application.

    The limits are read when a session starts; set them before serving.
    `shutdown()` closes every open session with 1001 (for the app's
    `on_shutdown`, so a graceful stop does not wait out its deadline).
    """

    def __init__(
        self,
        leases: LeaseKeeper,
        metrics: GatewayMetrics,
        *,
        max_sessions: int | None = None,
        idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        close_timeout_seconds: float = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    ) -> None:
        self._leases = leases
        self._metrics = metrics
        self.max_sessions = max_sessions if max_sessions is not None else default_max_sessions()
        self.idle_timeout_seconds = idle_timeout_seconds
        self.close_timeout_seconds = close_timeout_seconds
        self._slots = 0
        self._relays: set[Relay] = set()

    @property
    def open_sessions(self) -> int:
        """Sessions holding a slot (connecting upstream or relaying)."""
        return self._slots

    def limits(self, route: Route) -> RelayLimits:
        """A route's `max_body_bytes` bounds each message, in both directions."""
        return RelayLimits(
            max_message_bytes=route.max_body_bytes,
            idle_timeout_seconds=self.idle_timeout_seconds,
            close_timeout_seconds=self.close_timeout_seconds,
        )

    async def shutdown(self) -> None:
        for relay in list(self._relays):
            relay.stop()

    async def forward(
        self,
        request: web.Request,
        runtime: RouteRuntime,
        path: NormalPath,
        client: ClientInfo,
        authorization: str | None,
        started: float,
        lease: Lease | None,
    ) -> web.StreamResponse:
        try:
            check_handshake(request)
            if self._slots >= self.max_sessions:
                raise WebSocketCapacity()
        except BaseException:
            if lease is not None:
                await self._leases.release(lease)
            raise
        self._slots += 1
        try:
            return await self._session(
                request, runtime, path, client, authorization, started, lease
            )
        finally:
            self._slots -= 1

    async def _session(
        self,
        request: web.Request,
        runtime: RouteRuntime,
        path: NormalPath,
        client: ClientInfo,
        authorization: str | None,
        started: float,
        lease: Lease | None,
    ) -> web.StreamResponse:
        series = self._metrics.route(runtime.name)
        limits = self.limits(runtime.route)
        upstream = await self._connect(request, runtime, path, client, authorization, lease, series)
        try:
            if lease is not None:
                note = await self._leases.settle(lease, 101)
                if note is not None:
                    request[ERROR] = note
            request[UPSTREAM_STATUS] = 101
            elapsed = time.perf_counter() - started - upstream.elapsed
            series.added_latency.observe(max(elapsed, 0.0))
            protocol = upstream.ws.protocol
            ws = web.WebSocketResponse(
                protocols=(protocol,) if protocol else (),
                autoclose=False,
                autoping=False,
                max_msg_size=limits.max_msg_size,
                timeout=limits.close_timeout_seconds,
            )
            await ws.prepare(request)
        except ConnectionError:
            request[OUTCOME] = "client_disconnected"
            await self._discard(upstream, "client went away")
            return web.Response(status=499)  # never sent: the client is gone
        except BaseException:
            await self._discard(upstream, "gateway error")
            raise
        return await self._relay(request, ws, upstream, limits)

    async def _connect(
        self,
        request: web.Request,
        runtime: RouteRuntime,
        path: NormalPath,
        client: ClientInfo,
        authorization: str | None,
        lease: Lease | None,
        series: RouteSeries,
    ) -> UpstreamSocket:
        """The upstream socket; any failure gives the single-use lease back."""
        try:
            upstream = await connect_upstream(
                request, runtime.target, path.raw, client, authorization, self.limits(runtime.route)
            )
        except BaseException as exc:
            if isinstance(exc, ProxyError):
                series.upstream_requests(_failure_class(exc)).inc()
            if lease is not None:
                await self._leases.release(lease)
            raise
        series.upstream_latency.observe(upstream.elapsed)
        series.upstream_requests("1xx").inc()
        return upstream

    async def _relay(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        upstream: UpstreamSocket,
        limits: RelayLimits,
    ) -> web.StreamResponse:
        relay = Relay(ws, upstream.ws, limits)
        self._relays.add(relay)
        try:
            summary = await relay.run()
        except asyncio.CancelledError:  # the client's connection was lost
            request[OUTCOME] = "client_disconnected"
            await self._discard(upstream, "client went away")
            raise
        except Exception:  # past the 101 nothing can be answered as HTTP: close both sides
            log.exception("websocket relay failed", extra={"route": request.get(ROUTE)})
            request[OUTCOME] = "internal_error"
            await self._discard(upstream, "gateway error")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.close_timeout_seconds):
                    await ws.close(code=WSCloseCode.INTERNAL_ERROR)
            return ws
        finally:
            self._relays.discard(relay)
        await upstream.session.close()
        self._record(request, summary)
        await relay.close_client()  # the last wait: see Relay.close_client
        return ws

    async def _discard(self, upstream: UpstreamSocket, reason: str) -> None:
        """Close the upstream side even when this request is being cancelled."""
        await asyncio.shield(
            upstream.discard(WSCloseCode.GOING_AWAY, reason, self.close_timeout_seconds)
        )

    @staticmethod
    def _record(request: web.Request, summary: Summary) -> None:
        """The access log's outcome; codes and counts only (payloads and reasons are data)."""
        request[OUTCOME] = f"websocket_{summary.ending.value}"
        if summary.ending in _FAILED:
            request[ERROR] = (
                f"closed with {summary.sent_to_client} to the client and "
                f"{summary.sent_to_upstream} upstream after {summary.messages_up} messages up "
                f"and {summary.messages_down} down"
            )
