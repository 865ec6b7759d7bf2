"""WebSocket upgrades on the public listener: the lease, the upstream handshake, the session.

An admitted upgrade (paid, or on a free route) goes: check the client's
handshake -> take a session slot -> open the upstream WebSocket within the
route's upstream timeout -> the `Sale` is answered with the upstream's 101
(a single-use token consumed: one payment buys one session; a refusal,
failure or timeout has already given it back) -> accept the client's upgrade
with the subprotocol the upstream chose -> relay (gateway.proxy.wsrelay)
until a side closes.

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

from aiohttp import WSCloseCode, web

from gateway.config.model import Route
from gateway.http.clientinfo import ClientInfo
from gateway.paywall.located import Located
from gateway.paywall.refusals import RETRY_AFTER_SECONDS, GatewayError
from gateway.paywall.sale import Sale
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
from gateway.server.reqkeys import ACCESS
from gateway.server.targets import RouteTargets

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
        targets: RouteTargets,
        *,
        max_sessions: int | None = None,
        idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        close_timeout_seconds: float = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    ) -> None:
        self._targets = targets
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
        self, request: web.BaseRequest, located: Located, client: ClientInfo, sale: Sale
    ) -> web.StreamResponse:
        try:
            check_handshake(request)
            if self._slots >= self.max_sessions:
                raise WebSocketCapacity()
        except BaseException:
            await sale.failed(None)
            raise
        self._slots += 1
        try:
            return await self._session(request, located, client, sale)
        finally:
            self._slots -= 1

    async def _session(
        self, request: web.BaseRequest, located: Located, client: ClientInfo, sale: Sale
    ) -> web.StreamResponse:
        limits = self.limits(located.runtime.route)
        upstream = await self._connect(request, located, client, sale)
        try:
            await sale.answered(101)
            protocol = upstream.ws.protocol
            ws = web.WebSocketResponse(
                protocols=(protocol,) if protocol else (),
                autoclose=False,
                autoping=False,
                max_msg_size=limits.max_msg_size,
                timeout=limits.close_timeout_seconds,
            )
            ws.headers["X-Request-Id"] = request[ACCESS].request_id
            await ws.prepare(request)
        except ConnectionError:
            sale.outcome("client_disconnected")
            await self._discard(upstream, "client went away")
            return web.Response(status=499)  # never sent: the client is gone
        except BaseException:
            await self._discard(upstream, "gateway error")
            raise
        return await self._relay(request, ws, upstream, limits, sale)

    async def _connect(
        self, request: web.BaseRequest, located: Located, client: ClientInfo, sale: Sale
    ) -> UpstreamSocket:
        """The upstream socket; any failure gives the single-use token back."""
        target = self._targets.http(located.table, located.runtime)
        try:
            return await connect_upstream(
                request,
                target,
                located.path.raw,
                client,
                sale.authorization,
                self.limits(located.runtime.route),
            )
        except asyncio.CancelledError:
            await sale.client_left()
            raise
        except BaseException as exc:
            await sale.failed(_failure_class(exc) if isinstance(exc, ProxyError) else None)
            raise

    async def _relay(
        self,
        request: web.BaseRequest,
        ws: web.WebSocketResponse,
        upstream: UpstreamSocket,
        limits: RelayLimits,
        sale: Sale,
    ) -> web.StreamResponse:
        relay = Relay(ws, upstream.ws, limits)
        self._relays.add(relay)
        try:
            summary = await relay.run()
        except asyncio.CancelledError:  # the client's connection was lost
            sale.outcome("client_disconnected")
            await self._discard(upstream, "client went away")
            raise
        except Exception:  # past the 101 nothing can be answered as HTTP: close both sides
            log.exception("websocket relay failed", extra={"route": sale.runtime.name})
            sale.outcome("internal_error")
            await self._discard(upstream, "gateway error")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.close_timeout_seconds):
                    await ws.close(code=WSCloseCode.INTERNAL_ERROR)
            return ws
        finally:
            self._relays.discard(relay)
        await upstream.session.close()
        _record(sale, summary)
        await relay.close_client()  # the last wait: see Relay.close_client
        return ws

    async def _discard(self, upstream: UpstreamSocket, reason: str) -> None:
        """Close the upstream side even when this request is being cancelled."""
        await asyncio.shield(
            upstream.discard(WSCloseCode.GOING_AWAY, reason, self.close_timeout_seconds)
        )


def _record(sale: Sale, summary: Summary) -> None:
    """The access log's outcome; codes and counts only (payloads and reasons are data)."""
    sale.outcome(f"websocket_{summary.ending.value}")
    if summary.ending in _FAILED:
        sale.note(
            f"closed with {summary.sent_to_client} to the client and "
            f"{summary.sent_to_upstream} upstream after {summary.messages_up} messages up "
            f"and {summary.messages_down} down"
        )
