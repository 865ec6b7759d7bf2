"""Who is calling, read from an aiohttp request: the one place that turns the peer
address and the X-Forwarded-* headers of an HTTP/1.1 request into a ClientInfo (the
proxy's handler and the embedded aiohttp middleware both ask here; HTTP/2 streams read
the same facts from their own head in gateway.server.h2_admission)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.http.clientinfo import ClientInfo, IPNetwork


def client_of(request: web.BaseRequest, trusted_proxies: Sequence[IPNetwork]) -> ClientInfo:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    headers = request.headers
    return ClientInfo.resolve(
        peer[0] if peer else None,
        headers.getall("X-Forwarded-For", ()),
        headers.getall("X-Forwarded-Proto", ()),
        headers.getall("X-Forwarded-Host", ()),
        request.scheme,
        request.host,
        trusted_proxies,
    )
