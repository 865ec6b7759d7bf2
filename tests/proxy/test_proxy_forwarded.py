"""client_address / forwarded_chain: XFF is believed only through trusted hops."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.proxy import client_address, forwarded_chain

TRUSTED = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.1", "fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # Untrusted peer: its XFF claims are ignored.
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),
        # Trusted peer, no XFF: the peer itself is the client.
        ("10.1.2.3", [], "10.1.2.3"),
        # Trusted peer: rightmost untrusted hop wins.
        ("10.1.2.3", ["203.0.113.9"], "203.0.113.9"),
        # Spoofed entries left of the real client are not believed.
        ("10.1.2.3", ["6.6.6.6, 203.0.113.9, 10.9.9.9"], "203.0.113.9"),
        # Several header lines are one list, in order.
        ("127.0.0.1", ["6.6.6.6", "203.0.113.9", "10.0.0.2"], "203.0.113.9"),
        # All hops trusted: the leftmost one is the client.
        ("10.1.2.3", ["10.0.0.9, 10.0.0.8"], "10.0.0.9"),
        # Garbage stops the walk at the last hop a trusted proxy vouched for.
        ("10.1.2.3", ["203.0.113.9, unknown, 10.0.0.8"], "10.0.0.8"),
        # Ports, brackets and IPv4-mapped IPv6 are normalised.
        ("::ffff:10.1.2.3", ["[2001:db8::5]:443"], "2001:db8::5"),
        ("fd00::1", ["203.0.113.9:5555"], "203.0.113.9"),
        # An unparsable peer is reported as-is.
        ("", ["203.0.113.9"], "unknown"),
        (None, [], "unknown"),
    ],
)
def test_client_address(peer: str | None, xff: list[str], expected: str) -> None:
    assert client_address(peer, xff, TRUSTED) == expected


def test_no_trusted_networks_never_believes_xff() -> None:
    assert client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


@pytest.mark.parametrize(
    ("peer", "xff", "client", "expected"),
    [
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7", ["198.51.100.7"]),
        (
            "10.1.2.3",
            ["6.6.6.6, 203.0.113.9, 10.9.9.9"],
            "203.0.113.9",
            ["203.0.113.9", "10.9.9.9", "10.1.2.3"],
        ),
        ("10.1.2.3", ["203.0.113.9"], "192.0.2.1", ["192.0.2.1", "10.1.2.3"]),
        (None, [], "unknown", []),
    ],
)
def test_forwarded_chain(
    peer: str | None, xff: list[str], client: str, expected: list[str]
) -> None:
    assert forwarded_chain(peer, xff, client) == expected
