"""Header rewriting for both directions of the proxy (rules in gateway.http.headerpolicy)."""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http.clientinfo import ClientInfo
from gateway.http.headerpolicy import PROXY_SET_HEADERS, is_hop_by_hop
from gateway.l402.grammar import CREDENTIAL_HEADERS
from gateway.proxy.target import ProxyTarget


def connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Header names listed in every Connection header (lower-cased)."""
    return frozenset(
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    )


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    *,
    host: str,
    authorization: str | None,
    forwarded_for: str | None,
    forwarded_proto: str,
    forwarded_host: str | None,
    extra: Mapping[str, str],
) -> CIMultiDict[str]:
    """Headers sent upstream: end-to-end client headers plus what the proxy sets."""
    named = connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lowered = name.lower()
        if (
            is_hop_by_hop(lowered, named)
            or lowered in CREDENTIAL_HEADERS
            or lowered in PROXY_SET_HEADERS
        ):
            continue
        out.add(name, value)
    out["Host"] = host
    if authorization is not None:
        out["Authorization"] = authorization
    if forwarded_for:
        out["X-Forwarded-For"] = forwarded_for
    out["X-Forwarded-Proto"] = forwarded_proto
    if forwarded_host:
        out["X-Forwarded-Host"] = forwarded_host
    for name, value in extra.items():
        out[name] = value
    return out


def headers_for_target(
    incoming: CIMultiDictProxy[str],
    target: ProxyTarget,
    client: ClientInfo,
    authorization: str | None,
) -> CIMultiDict[str]:
    """What every transport (HTTP/1.1, WebSocket, HTTP/2) sends a route's upstream:
    the target's Host and extra headers, the client as the trusted hops resolved it."""
    return upstream_request_headers(
        incoming,
        host=target.host_header,
        authorization=authorization,
        forwarded_for=", ".join(client.chain),
        forwarded_proto=client.proto,
        forwarded_host=client.host,
        extra=target.extra_headers,
    )


def downstream_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop ones; duplicates (Set-Cookie) kept.

    Built in one go from the kept pairs (adding them one by one was a few
    percent of a paid request's CPU).
    """
    named = connection_tokens(upstream)
    return CIMultiDict(
        [
            (name, value)
            for name, value in upstream.items()
            if not is_hop_by_hop(name.lower(), named)
        ]
    )
