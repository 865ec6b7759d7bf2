"""Minter with in-memory fakes: ordering, records, returned challenge."""

from __future__ import annotations

import hashlib

import pytest

from gateway.l402 import macaroons
from gateway.l402.credentials import parse
from gateway.l402.identifier import Identifier
from gateway.l402.mint import Challenge, Minter, MintRequest, NewInvoice, TokenRecord
from gateway.l402.records import TokenRecord as RecordsTokenRecord
from gateway.l402.verify import verify

PREIMAGE = b"\x33" * 32
PAYMENT_HASH = hashlib.sha256(PREIMAGE).digest()
NOW = 1_700_000_000


class FakeInvoiceSource:
    """In-memory stand-in for LND's AddInvoice."""

    def __init__(self, payment_hash: bytes = PAYMENT_HASH, fail: Exception | None = None) -> None:
        self.payment_hash = payment_hash
        self.fail = fail
        self.calls: list[tuple[int, str, int, bool]] = []

    async def add_invoice(
        self, value_msat: int, memo: str, expiry: int, private: bool
    ) -> NewInvoice:
        self.calls.append((value_msat, memo, expiry, private))
        if self.fail is not None:
            raise self.fail
        return NewInvoice("lnbcrt100n1fake", self.payment_hash, add_index=7)


class FakeKeyStore:
    """In-memory stand-in for the token store."""

    def __init__(self) -> None:
        self.records: dict[bytes, TokenRecord] = {}

    async def put_token(self, record: TokenRecord) -> None:
        self.records[record.key_id] = record


def _request(**overrides: object) -> MintRequest:
    fields: dict[str, object] = {
        "route": "premium",
        "service": "svc",
        "price_msat": 10_000,
        "memo": "premium signal",
        "expiry": 600,
        "private": True,
        "capabilities": ("read",),
        "validity_seconds": 3600,
        "single_use": True,
    }
    fields.update(overrides)
    return MintRequest(**fields)  # type: ignore[arg-type]


async def test_mint_creates_invoice_then_stores_token() -> None:
    invoices, keys = FakeInvoiceSource(), FakeKeyStore()
    minter = Minter(invoices, keys)
    got = await minter.mint(_request(), NOW)

    assert invoices.calls == [(10_000, "premium signal", 600, True)]
    assert isinstance(got, Challenge)
    assert got.invoice == "lnbcrt100n1fake"
    assert got.payment_hash == PAYMENT_HASH
    assert got.amount_msats == 10_000
    assert got.expires_at == NOW + 600
    assert got.macaroon_b64 == macaroons.encode_b64(got.macaroon)

    decoded = macaroons.decode_raw(got.macaroon)
    ident = Identifier.decode(decoded.identifier)
    assert ident.payment_hash == PAYMENT_HASH
    assert ident.token_id == got.token_id
    assert decoded.location == "lsat"
    assert decoded.caveats == (
        "services=svc:0",
        "svc_capabilities=read",
        f"svc_valid_until={NOW + 3600}",
    )

    record = keys.records[ident.key_id]
    assert record == RecordsTokenRecord(
        key_id=ident.key_id,
        token_id=got.token_id,
        payment_hash=PAYMENT_HASH,
        route="premium",
        root_key=record.root_key,
        price_msat=10_000,
        single_use=True,
        created_at=NOW,
        valid_until=NOW + 3600,
    )
    assert len(record.root_key) == 32
    assert macaroons.signature_valid(record.root_key, decoded)
    assert record.root_key.hex() not in repr(record)


async def test_minted_token_verifies_end_to_end() -> None:
    keys = FakeKeyStore()
    got = await Minter(FakeInvoiceSource(), keys).mint(_request(), NOW)
    cred = parse([("Authorization", f"LSAT {got.macaroon_b64}:{PREIMAGE.hex()}")])
    assert cred is not None
    key_id = Identifier.decode(cred.macaroon.identifier).key_id
    token = verify(cred, keys.records[key_id].root_key, "svc", "read", NOW + 10)
    assert token.valid_until == NOW + 3600


async def test_each_mint_gets_its_own_root_key_and_token_id() -> None:
    keys = FakeKeyStore()
    minter = Minter(FakeInvoiceSource(), keys)
    first = await minter.mint(_request(), NOW)
    second = await minter.mint(_request(), NOW)
    assert first.token_id != second.token_id
    assert len(keys.records) == 2
    root_keys = {r.root_key for r in keys.records.values()}
    assert len(root_keys) == 2


async def test_no_validity_means_no_deadline_caveat() -> None:
    keys = FakeKeyStore()
    got = await Minter(FakeInvoiceSource(), keys).mint(
        _request(validity_seconds=None, capabilities=()), NOW
    )
    assert macaroons.decode_raw(got.macaroon).caveats == ("services=svc:0",)
    assert next(iter(keys.records.values())).valid_until is None


async def test_invoice_failure_stores_nothing() -> None:
    invoices = FakeInvoiceSource(fail=ConnectionError("lnd down"))
    keys = FakeKeyStore()
    with pytest.raises(ConnectionError):
        await Minter(invoices, keys).mint(_request(), NOW)
    assert len(invoices.calls) == 1
    assert keys.records == {}


async def test_bad_payment_hash_from_source_stores_nothing() -> None:
    keys = FakeKeyStore()
    with pytest.raises(ValueError, match="5-byte"):
        await Minter(FakeInvoiceSource(payment_hash=b"short"), keys).mint(_request(), NOW)
    assert keys.records == {}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"price_msat": 0}, "price_msat"),
        ({"price_msat": -1}, "price_msat"),
        ({"expiry": 0}, "expiry"),
        ({"validity_seconds": 0}, "validity_seconds"),
        ({"service": "bad name"}, "service name"),
    ],
)
def test_invalid_requests_refused_before_any_invoice(
    override: dict[str, object], match: str
) -> None:
    # A MintRequest is validated when it is built (once per route), so a bad one
    # never reaches the invoice source.
    with pytest.raises(ValueError, match=match):
        _request(**override)


async def test_randomness_is_injected() -> None:
    """Root key and token id come from the injected source, like `now`."""
    draws: list[int] = []

    def counting(n: int) -> bytes:
        draws.append(n)
        return bytes([len(draws)]) * n

    keys = FakeKeyStore()
    got = await Minter(FakeInvoiceSource(), keys, random_bytes=counting).mint(_request(), NOW)
    record = next(iter(keys.records.values()))
    assert draws == [32, 32]
    assert record.root_key == b"\x01" * 32
    assert got.token_id == b"\x02" * 32
