"""Header rules for both directions of the proxy.

Hop-by-hop headers describe one TCP connection and must not cross the proxy
(RFC 9110 §7.6.1); client credentials must not reach the upstream except the
single `Authorization` the gateway chooses (EP212's CDN rejected duplicates).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: header names, methods

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Every form of L402 credential a client may send; the gateway forwards its own.
CREDENTIAL_HEADERS = frozenset({"authorization", "grpc-metadata-macaroon", "macaroon"})

# Set by the proxy from trusted information; client copies are replaced.
PROXY_SET_HEADERS = frozenset(
    {
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        # aiohttp answers `Expect: 100-continue` itself before the handler runs.
        "expect",
    }
)


def extra_header_problem(name: str, *, forwards_authorization: bool) -> str | None:
    """Why configuration may not add header `name` to upstream requests, or None.

    The one rule for `upstream_headers`, used by the config loader (to report
    file:line) and by ProxyTarget. `Authorization` is the operator's to set only
    when the route does not forward the buyer's L402 credential.
    """
    lowered = name.lower()
    if TOKEN.fullmatch(name) is None:
        return "not a valid header name"
    if lowered == "content-length" or is_hop_by_hop(lowered, frozenset()):
        return "hop-by-hop or framing header cannot be set"
    if lowered in PROXY_SET_HEADERS:
        return "set by the gateway itself"
    if lowered == "authorization":
        return "conflicts with forward_authorization" if forwards_authorization else None
    if lowered in CREDENTIAL_HEADERS:
        return "an L402 credential header cannot be set"
    return None


def is_hop_by_hop(lowered: str, named: frozenset[str]) -> bool:
    """True for fixed hop-by-hop names, any Proxy-* header, or one named in Connection."""
    return lowered in HOP_BY_HOP or lowered.startswith("proxy-") or lowered in named


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


def downstream_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop ones; duplicates (Set-Cookie) kept."""
    named = connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if not is_hop_by_hop(name.lower(), named):
            out.add(name, value)
    return out
