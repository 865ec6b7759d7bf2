"""What an operator may paste to name a token: its id, its payment hash, or a credential.

A customer or an abuse report hands over a macaroon (or a whole
`L402 <macaroon>:<preimage>` header); the token id is inside the macaroon's
identifier. Only the identifier is read: the preimage is dropped unread and
nothing pasted is ever printed back.
"""

from __future__ import annotations

import re
import sys

from gateway.l402 import macaroons
from gateway.l402.errors import L402Error
from gateway.l402.identifier import Identifier

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SCHEME = re.compile(r"(?i)^\s*(authorization:\s*)?(l402|lsat)\s+")
STDIN = "-"


class TokenRefError(ValueError):
    """Not a token id, payment hash or macaroon (the message never quotes the input)."""


def read_ref(text: str) -> str:
    """`-` reads one line from stdin: keeps a pasted credential out of `ps` and shell history."""
    if text == STDIN:
        return sys.stdin.readline().strip()
    return text.strip()


def token_key(text: str) -> bytes:
    """32 bytes to look up: a token id or payment hash as given, or the id in a macaroon."""
    if _HEX64.fullmatch(text):
        return bytes.fromhex(text)
    body = _SCHEME.sub("", text)
    if body.lower().startswith(("macaroon=", "token=")):
        body = body.split("=", 1)[1].split(",", 1)[0].strip().strip('"')
    macaroon_text = body.rsplit(":", 1)[0] if ":" in body else body
    try:
        decoded = (
            macaroons.decode_hex(macaroon_text)
            if re.fullmatch(r"[0-9a-fA-F]+", macaroon_text)
            else macaroons.decode(macaroon_text)
        )
        return Identifier.decode(decoded.identifier).token_id
    except L402Error as exc:
        raise TokenRefError(
            "expected a token id or payment hash (64 hex characters), a macaroon,"
            f" or an `L402 <macaroon>:<preimage>` credential ({exc.detail})"
        ) from None
