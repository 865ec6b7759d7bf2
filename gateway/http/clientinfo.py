"""Client address resolution behind trusted reverse proxies.

`X-Forwarded-For` is attacker-controlled unless the hop that appended to it is
ours, so the chain is believed only from a trusted direct peer and walked from
the right, stopping at the first address that is not a trusted proxy.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer or XFF entry; tolerates ports and IPv4-mapped IPv6."""
    if not text:
        return None
    return _parse_ip(text)


# Parsing with ipaddress costs more than the rest of the trust walk; peers repeat.
# Bounded, so attacker-chosen XFF values cannot grow it.
@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IPAddress | None:
    candidate = text.strip()
    if candidate.startswith("["):  # "[2001:db8::1]:443"
        candidate = candidate[1 : candidate.find("]")] if "]" in candidate else ""
    elif candidate.count(":") == 1:  # "192.0.2.1:8080"
        candidate = candidate.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _text(address: IPAddress) -> str:
    """The address's normal text form (ipaddress renders it in Python each time)."""
    return str(address)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def _hops(header_values: Sequence[str]) -> list[str]:
    return [hop.strip() for value in header_values for hop in value.split(",") if hop.strip()]


def client_address(
    peer_ip: str | None, x_forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The originating client's address as far as trusted hops can vouch for it."""
    peer = parse_ip(peer_ip)
    if peer is None:
        return peer_ip or UNKNOWN
    current = _text(peer)
    if not _is_trusted(peer, trusted):
        return current
    for hop in reversed(_hops(x_forwarded_for)):
        address = parse_ip(hop)
        if address is None:
            # Garbage such as "unknown": the last trusted hop is all we know.
            return current
        current = _text(address)
        if not _is_trusted(address, trusted):
            return current
    return current


def forwarded_chain(
    peer_ip: str | None, x_forwarded_for: Sequence[str], client_ip: str
) -> list[str]:
    """The X-Forwarded-For chain to send upstream: the believed part plus the peer.

    The incoming chain was believed by `client_address` exactly when it returned
    something other than the peer, so the hops from `client_ip` rightwards are
    all trusted proxies and are kept; anything left of the client is dropped.
    """
    peer = parse_ip(peer_ip)
    peer_text = _text(peer) if peer is not None else None
    if not client_ip or client_ip == UNKNOWN:
        return [peer_text] if peer_text else []
    if peer_text is None or client_ip == peer_text:
        return [client_ip]
    hops = [_text(a) if (a := parse_ip(hop)) is not None else hop for hop in _hops(x_forwarded_for)]
    for index in range(len(hops) - 1, -1, -1):
        if hops[index] == client_ip:
            return [*hops[index:], peer_text]
    return [client_ip, peer_text]


def _last(values: Sequence[str]) -> str | None:
    """Rightmost entry of a possibly comma-joined header (the nearest hop's value)."""
    for value in reversed(values):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if parts:
            return parts[-1]
    return None


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who sent a request, computed once per request from the peer and trusted hops.

    `address` keys the rate limiter and the logs; `chain`, `proto` and `host`
    are what the upstream is told (X-Forwarded-For/-Proto/-Host).
    """

    address: str
    chain: tuple[str, ...]
    proto: str
    host: str

    @classmethod
    def resolve(
        cls,
        peer_ip: str | None,
        x_forwarded_for: Sequence[str],
        x_forwarded_proto: Sequence[str],
        x_forwarded_host: Sequence[str],
        scheme: str,
        host: str,
        trusted: Sequence[IPNetwork],
    ) -> ClientInfo:
        address = client_address(peer_ip, x_forwarded_for, trusted)
        chain = forwarded_chain(peer_ip, x_forwarded_for, address)
        if len(chain) > 1:  # the peer vouched for an earlier hop: believe its proto and host
            scheme = _last(x_forwarded_proto) or scheme
            host = _last(x_forwarded_host) or host
        return cls(address, tuple(chain), scheme, host)
