"""The 402 challenge: WWW-Authenticate headers, JSON body, gRPC form.

Aperture sends two WWW-Authenticate headers, LSAT first then L402, because
old clients only know LSAT and some parse only the first header. The
`amount_msats` attribute spares buyers a BOLT11 decode before their spend
check; the invoice remains the authority.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMES = ("LSAT", "L402")
GRPC_STATUS_INTERNAL = "13"
GRPC_MESSAGE = "payment required"

# Values are quoted-string contents: nothing that could end the quote or the header.
_SAFE = re.compile(r"[A-Za-z0-9+/=_.:-]+")


def _check(value: str, what: str) -> str:
    if not _SAFE.fullmatch(value):
        raise ValueError(f"{what} contains characters not allowed in a challenge")
    return value


def _value(scheme: str, macaroon_b64: str, invoice: str, amount_msats: int) -> str:
    if amount_msats <= 0:
        raise ValueError("amount_msats must be positive")
    return (
        f'{scheme} macaroon="{_check(macaroon_b64, "macaroon")}", '
        f'invoice="{_check(invoice, "invoice")}", amount_msats="{amount_msats}"'
    )


def headers(macaroon_b64: str, invoice: str, amount_msats: int) -> list[tuple[str, str]]:
    """Both WWW-Authenticate entries, LSAT first."""
    return [
        ("WWW-Authenticate", _value(scheme, macaroon_b64, invoice, amount_msats))
        for scheme in SCHEMES
    ]


def body(
    route: str,
    price_msats: int,
    invoice: str,
    macaroon_b64: str,
    payment_hash_hex: str,
    expires_at: int,
) -> dict[str, Any]:
    """JSON body for agents and browsers (Aperture only sends text)."""
    return {
        "error": "payment_required",
        "route": route,
        "price_msats": price_msats,
        "invoice": invoice,
        "macaroon": macaroon_b64,
        "payment_hash": payment_hash_hex,
        "expires_at": expires_at,
    }


def grpc_headers(macaroon_b64: str, invoice: str, amount_msats: int) -> list[tuple[str, str]]:
    """Trailers-only gRPC answer (sent with HTTP 200): gRPC cannot carry a 402."""
    return [
        ("content-type", "application/grpc"),
        ("grpc-status", GRPC_STATUS_INTERNAL),
        ("grpc-message", GRPC_MESSAGE),
        *headers(macaroon_b64, invoice, amount_msats),
    ]
