"""What the store keeps per minted token (shared by mint and gateway.store)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One minted token. `root_key` is secret: kept out of repr."""

    key_id: bytes  # sha256(identifier): lookup key for the root key
    token_id: bytes  # identifier's random part; hex is the operator-visible id
    payment_hash: bytes
    route: str
    root_key: bytes = field(repr=False)
    price_msat: int
    single_use: bool
    created_at: int  # unix seconds
    valid_until: int | None  # unix seconds; None = never expires
    scheme: str = "l402"  # or a Payment-scheme invoice: "charge", "session" (no macaroon)

    @property
    def token_id_hex(self) -> str:
        return self.token_id.hex()
