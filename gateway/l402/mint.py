"""Mint a challenge: invoice first, then root key, then macaroon, then store.

The invoice comes first so a Lightning failure leaves nothing behind, and the
token is stored before the challenge is returned so a client that pays at
once always finds its root key. I/O is injected through two Protocols, as
Aperture's mint takes its invoice source and secret store as interfaces.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.l402 import caveats, macaroons
from gateway.l402.identifier import HASH_LEN, TOKEN_ID_LEN, VERSION, Identifier
from gateway.l402.records import TokenRecord

__all__ = [
    "Challenge",
    "InvoiceLike",
    "InvoiceSource",
    "MintRequest",
    "Minter",
    "NewInvoice",
    "RootKeyStore",
    "TokenRecord",
]

ROOT_KEY_LEN = 32


class InvoiceLike(Protocol):
    """What an invoice source returns (lightning's AddedInvoice fits)."""

    @property
    def payment_request(self) -> str: ...
    @property
    def payment_hash(self) -> bytes: ...
    @property
    def add_index(self) -> int: ...


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """A plain InvoiceLike for adapters and tests."""

    payment_request: str
    payment_hash: bytes
    add_index: int


class InvoiceSource(Protocol):
    """Creates Lightning invoices (the LND client satisfies it as it is)."""

    async def add_invoice(
        self, value_msat: int, memo: str, expiry: int, private: bool
    ) -> InvoiceLike: ...


class RootKeyStore(Protocol):
    async def put_token(self, record: TokenRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class MintRequest:
    """What a route sells; built once per route (the caller keeps it), validated here."""

    route: str
    service: str
    price_msat: int
    memo: str
    expiry: int  # invoice expiry, seconds
    private: bool = False  # add route hints (node behind private channels)
    capabilities: Sequence[str] = ()
    validity_seconds: int | None = None  # token lifetime; None = never expires
    single_use: bool = False

    def __post_init__(self) -> None:
        if self.price_msat <= 0:
            raise ValueError("price_msat must be positive (free routes are not minted)")
        if self.expiry <= 0:
            raise ValueError("invoice expiry must be positive")
        if self.validity_seconds is not None and self.validity_seconds <= 0:
            raise ValueError("validity_seconds must be positive or None")
        caveats.check_names(self.service, self.capabilities)


@dataclass(frozen=True, slots=True)
class Challenge:
    macaroon: bytes = field(repr=False)
    macaroon_b64: str = field(repr=False)
    invoice: str
    payment_hash: bytes
    amount_msats: int
    expires_at: int  # invoice expiry, unix seconds
    token_id: bytes

    @property
    def token_id_hex(self) -> str:
        return self.token_id.hex()


class Minter:
    """Invoice, then root key and macaroon, then store. `random_bytes` is injectable
    (like `now`) so the core stays deterministic under test."""

    def __init__(
        self,
        invoices: InvoiceSource,
        keys: RootKeyStore,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._invoices = invoices
        self._keys = keys
        self._random = random_bytes

    async def mint(self, request: MintRequest, now: int) -> Challenge:
        invoice = await self._invoices.add_invoice(
            request.price_msat, request.memo, request.expiry, request.private
        )
        if len(invoice.payment_hash) != HASH_LEN:
            raise ValueError(f"invoice source returned a {len(invoice.payment_hash)}-byte hash")
        valid_until = None
        if request.validity_seconds is not None:
            valid_until = now + request.validity_seconds
        root_key = self._random(ROOT_KEY_LEN)
        identifier = Identifier(VERSION, bytes(invoice.payment_hash), self._random(TOKEN_ID_LEN))
        raw = macaroons.mint(
            root_key,
            identifier.encode(),
            caveats.for_route(request.service, request.capabilities, valid_until),
        )
        await self._keys.put_token(
            TokenRecord(
                key_id=identifier.key_id,
                token_id=identifier.token_id,
                payment_hash=identifier.payment_hash,
                route=request.route,
                root_key=root_key,
                price_msat=request.price_msat,
                single_use=request.single_use,
                created_at=now,
                valid_until=valid_until,
            )
        )
        return Challenge(
            macaroon=raw,
            macaroon_b64=macaroons.encode_b64(raw),
            invoice=invoice.payment_request,
            payment_hash=identifier.payment_hash,
            amount_msats=request.price_msat,
            expires_at=now + request.expiry,
            token_id=identifier.token_id,
        )
