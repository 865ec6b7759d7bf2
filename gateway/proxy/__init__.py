"""Streaming reverse proxy: targets, client address resolution, typed errors."""

from gateway.proxy.client import PROXY_KEY, Proxy, UpstreamResponse, proxy_ctx
from gateway.proxy.errors import (
    BodyTooLarge,
    ProxyError,
    RequestBodyError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.forwarded import client_address, forwarded_chain
from gateway.proxy.target import ProxyTarget, make_ssl_context

__all__ = [
    "PROXY_KEY",
    "BodyTooLarge",
    "Proxy",
    "ProxyError",
    "ProxyTarget",
    "RequestBodyError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "client_address",
    "forwarded_chain",
    "make_ssl_context",
    "proxy_ctx",
]
