"""Streaming reverse proxy: targets, client address resolution, typed errors."""

from gateway.http.clientinfo import ClientInfo, client_address, forwarded_chain
from gateway.proxy.errors import (
    BodyTooLarge,
    ProxyError,
    RequestBodyError,
    RequestBodyTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.exchange import Proxy, UpstreamResponse
from gateway.proxy.target import ProxyTarget, make_ssl_context

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
