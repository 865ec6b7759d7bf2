"""WebSocket upgrades: recognising them, and the upstream half of the handshake.

The gateway terminates WebSocket on both hops (aiohttp on each side) rather
than splicing bytes, so it can bound and account for what it relays
(gateway.proxy.wsrelay). The handshake is therefore per hop: the client's
key, version and extensions stay on the client's hop, aiohttp writes its own
upstream, and the client's subprotocol list is offered upstream so the
upstream's choice can be given back to the client. Every other header is
forwarded by the same rules as HTTP (gateway.proxy.headers): hop-by-hop and
credential headers never cross, `Authorization` is the one the route chose.
Compression is negotiated with the client only (aiohttp bounds the inflated
size by the message limit); the upstream hop is uncompressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import WSCloseCode, web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http.clientinfo import ClientInfo
from gateway.proxy.errors import ProxyError, UpstreamTimeout, UpstreamUnreachable
from gateway.proxy.headers import connection_tokens, headers_for_target
from gateway.proxy.target import ProxyTarget

# The handshake is per hop: aiohttp writes its own key, version and extensions upstream.
_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "content-length",
    }
)
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")
# Codes that must never be sent in a close frame (RFC 6455 §7.4.1), and "no code at all".
_UNSENDABLE = frozenset({0, 1004, 1005, 1006, 1015})


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    """A GET with `Upgrade: websocket` and `Connection: upgrade`.

    Anything else, other upgrades included, is proxied as plain HTTP (the
    Upgrade header is hop-by-hop and is not forwarded).
    """
    headers = request.headers
    return (
        request.method == "GET"
        and headers.get("Upgrade", "").strip().lower() == "websocket"
        and "upgrade" in connection_tokens(headers)
    )


def offered_protocols(headers: CIMultiDictProxy[str]) -> tuple[str, ...]:
    """The client's subprotocols, from the header aiohttp's server side reads too."""
    value = headers.get("Sec-WebSocket-Protocol", "")
    return tuple(p.strip() for p in value.split(",") if p.strip())


def sendable(code: int | None, fallback: int = WSCloseCode.OK) -> int:
    """A close code we may put on the wire for `code` (a missing one becomes 1000)."""
    if code is None or code in _UNSENDABLE:
        return WSCloseCode.OK if code in (None, 0, 1005) else fallback
    return code


class UpgradeRefused(ProxyError):
    """The upstream answered the WebSocket handshake without switching protocols."""

    status = 502
    reason = "upgrade_refused"

    def __init__(self, detail: str, upstream_status: int) -> None:
        super().__init__(detail)
        self.upstream_status = upstream_status


class BadUpgrade(ProxyError):
    """The client's handshake is not a valid WebSocket opening (version, key)."""

    status = 400
    reason = "bad_websocket_handshake"


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Per-session bounds: message size, idle time, and the close handshake's wait."""

    max_message_bytes: int
    idle_timeout_seconds: float
    close_timeout_seconds: float

    @property
    def max_msg_size(self) -> int:
        """aiohttp's `max_msg_size` for messages of up to `max_message_bytes`: aiohttp
        refuses a frame whose length reaches its limit (the inflated size of a
        compressed message is compared with `>`, so it may be one byte longer)."""
        return self.max_message_bytes + 1


@dataclass(eq=False)
class UpstreamSocket:
    """An upstream WebSocket and the one-connection session that owns it."""

    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    elapsed: float

    async def discard(self, code: int, reason: str, seconds: float) -> None:
        """Close the socket (bounded) and the session; never raises."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(seconds):
                await self.ws.close(code=code, message=reason.encode())
        await self.session.close()


def _upstream_headers(
    request: web.BaseRequest, target: ProxyTarget, client: ClientInfo, authorization: str | None
) -> CIMultiDict[str]:
    headers = headers_for_target(request.headers, target, client, authorization)
    for name in list(headers.keys()):
        if name.lower() in _HANDSHAKE_HEADERS:
            del headers[name]
    return headers


def check_handshake(request: web.BaseRequest) -> None:
    """Raise BadUpgrade before anything is spent on a handshake aiohttp would refuse."""
    probe = web.WebSocketResponse(protocols=offered_protocols(request.headers))
    if not probe.can_prepare(request).ok:
        raise BadUpgrade("not a valid WebSocket handshake (version 13 and a 16-byte key)")


async def connect_upstream(
    request: web.BaseRequest,
    target: ProxyTarget,
    path: str,
    client: ClientInfo,
    authorization: str | None,
    limits: RelayLimits,
) -> UpstreamSocket:
    """Open the upstream WebSocket within the route's upstream timeout.

    Each session gets its own one-connection ClientSession: an upgraded
    connection is held for the session's life and must not take a slot of the
    shared HTTP pool (256 WebSockets would starve every HTTP request).
    Raises UpstreamTimeout, UpstreamUnreachable or UpgradeRefused.
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=target.timeout_seconds, sock_read=target.timeout_seconds
        ),
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        trust_env=False,
        auto_decompress=False,
    )
    started = time.perf_counter()
    try:
        async with asyncio.timeout(target.timeout_seconds):
            ws = await session.ws_connect(
                target.url_for(path, request.rel_url.raw_query_string),
                protocols=offered_protocols(request.headers),
                headers=_upstream_headers(request, target, client, authorization),
                ssl=target.ssl,
                autoclose=False,
                autoping=False,
                compress=0,
                max_msg_size=limits.max_msg_size,
                timeout=aiohttp.ClientWSTimeout(
                    ws_receive=None, ws_close=limits.close_timeout_seconds
                ),
            )
    except BaseException as exc:
        await session.close()
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            if exc.status == 101:
                raise UpgradeRefused("upstream sent an invalid WebSocket handshake", 101) from None
            raise UpgradeRefused(
                f"upstream answered {exc.status} instead of switching protocols", exc.status
            ) from None
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout("upstream did not complete the WebSocket handshake") from None
        if isinstance(exc, aiohttp.ClientError | OSError):
            raise UpstreamUnreachable(
                f"upstream WebSocket handshake failed: {type(exc).__name__}"
            ) from None
        raise
    return UpstreamSocket(ws, session, time.perf_counter() - started)
