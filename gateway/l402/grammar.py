"""HTTP grammar the L402 protocol rests on, and the headers that carry credentials.

One home for these rules: the config loader (methods, header names), the proxy
(which client headers never reach the upstream), the credential parser and the
buyer's challenge parser all read them from here. Pure data, no I/O.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2 token characters: header names, methods, auth schemes.
TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
OWS = " \t"

AUTHORIZATION = "authorization"
# bLIP-26 / Aperture: a hex macaroon carrying a `preimage=` caveat.
TOKEN_HEADER = "token"  # noqa: S105 (a header name)
GRPC_TOKEN_HEADER = "grpc-metadata-token"  # noqa: S105
GRPC_MACAROON_HEADER = "grpc-metadata-macaroon"
MACAROON_HEADER = "macaroon"

# Every request header (lower-case) that can carry an L402 credential. None of
# them is ever forwarded upstream as sent: the gateway forwards its own single
# canonical `Authorization` when the route asks for it.
CREDENTIAL_HEADERS = frozenset(
    {AUTHORIZATION, TOKEN_HEADER, GRPC_TOKEN_HEADER, GRPC_MACAROON_HEADER, MACAROON_HEADER}
)


def is_token(text: str) -> bool:
    """True when `text` is a non-empty RFC 9110 token."""
    return TOKEN.fullmatch(text) is not None
