"""Which headers may cross the proxy, and which an operator may add (pure rules).

Hop-by-hop headers describe one TCP connection and must not cross the proxy
(RFC 9110 §7.6.1); client credentials never reach the upstream except the
single `Authorization` the gateway chooses (EP212's CDN rejected duplicates).
The config loader checks `upstream_headers` with `extra_header_problem` and the
proxy filters with the same sets, so the two cannot disagree. No aiohttp here:
loading a config must not import the proxy.
"""

from __future__ import annotations

from gateway.l402.grammar import AUTHORIZATION, CREDENTIAL_HEADERS, is_token

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)

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


def is_hop_by_hop(lowered: str, named: frozenset[str]) -> bool:
    """True for fixed hop-by-hop names, any Proxy-* header, or one named in Connection."""
    return lowered in HOP_BY_HOP or lowered.startswith("proxy-") or lowered in named


def extra_header_problem(name: str, *, forwards_authorization: bool) -> str | None:
    """Why configuration may not add header `name` to upstream requests, or None.

    `Authorization` is the operator's to set only when the route does not
    forward the buyer's L402 credential.
    """
    lowered = name.lower()
    if not is_token(name):
        return "not a valid header name"
    if lowered == "content-length" or is_hop_by_hop(lowered, frozenset()):
        return "hop-by-hop or framing header cannot be set"
    if lowered in PROXY_SET_HEADERS:
        return "set by the gateway itself"
    if lowered == AUTHORIZATION:
        return "conflicts with forward_authorization" if forwards_authorization else None
    if lowered in CREDENTIAL_HEADERS:
        return "an L402 credential header cannot be set"
    return None
