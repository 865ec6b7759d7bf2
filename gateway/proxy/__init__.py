"""Streaming reverse proxy: targets, client address resolution, typed errors.

`Proxy` and `UpstreamResponse` (exchange.py, on aiohttp's server types) load on
first use: checking a config builds targets without loading aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.http.clientinfo import ClientInfo, client_address, forwarded_chain
from gateway.proxy.errors import (
    BodyTooLarge,
    ProxyError,
    RequestBodyError,
    RequestBodyTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.target import ProxyTarget, make_ssl_context

if TYPE_CHECKING:
    from gateway.proxy.exchange import Proxy, UpstreamResponse

__all__ = [
    "BodyTooLarge",
    "ClientInfo",
    "Proxy",
    "ProxyError",
    "ProxyTarget",
    "RequestBodyError",
    "RequestBodyTimeout",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "client_address",
    "forwarded_chain",
    "make_ssl_context",
]


def __getattr__(name: str) -> Any:
    if name in ("Proxy", "UpstreamResponse"):
        from gateway.proxy import exchange

        return getattr(exchange, name)
    raise AttributeError(name)
