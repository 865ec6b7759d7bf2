"""Aperture's 66-byte token identifier.

Layout (big-endian): uint16 version (0) | payment_hash[32] | token_id[32].
Clients read the payment hash out of it, and the store keys the per-token
root key by sha256 of the encoded identifier, as Aperture does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from gateway.l402.errors import malformed

VERSION = 0
HASH_LEN = 32
TOKEN_ID_LEN = 32
ENCODED_LEN = 2 + HASH_LEN + TOKEN_ID_LEN


@dataclass(frozen=True, slots=True)
class Identifier:
    """A decoded identifier; `token_id.hex()` is the operator-visible token id."""

    version: int
    payment_hash: bytes
    token_id: bytes

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise ValueError(f"unsupported identifier version {self.version}")
        if len(self.payment_hash) != HASH_LEN:
            raise ValueError(f"payment hash must be {HASH_LEN} bytes")
        if len(self.token_id) != TOKEN_ID_LEN:
            raise ValueError(f"token id must be {TOKEN_ID_LEN} bytes")

    @classmethod
    def new(cls, payment_hash: bytes) -> Identifier:
        """A fresh identifier for `payment_hash` with a random token id."""
        return cls(VERSION, bytes(payment_hash), secrets.token_bytes(TOKEN_ID_LEN))

    @classmethod
    def decode(cls, raw: bytes) -> Identifier:
        """Strict decode: exactly 66 bytes and version 0, else `malformed`."""
        if len(raw) != ENCODED_LEN:
            raise malformed(f"identifier must be {ENCODED_LEN} bytes, got {len(raw)}")
        version = int.from_bytes(raw[:2], "big")
        if version != VERSION:
            raise malformed(f"unsupported identifier version {version}")
        return cls(version, bytes(raw[2 : 2 + HASH_LEN]), bytes(raw[2 + HASH_LEN :]))

    def encode(self) -> bytes:
        """The 66-byte wire form carried as the macaroon identifier."""
        return self.version.to_bytes(2, "big") + self.payment_hash + self.token_id

    @property
    def key_id(self) -> bytes:
        """sha256(encoded identifier): where the store keeps the root key."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def token_id_hex(self) -> str:
        return self.token_id.hex()
