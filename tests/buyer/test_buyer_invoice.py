"""BOLT11 decoding with real signed invoices, and macaroon identifier reading."""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest
from coincurve import PrivateKey

from gateway.buyer.errors import ChallengeError, InvoiceError
from gateway.buyer.invoice import decode_invoice, inspect_macaroon, parse_hrp

from .fakes import make_invoice, mint_macaroon


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey()


@pytest.fixture
def payment_hash() -> bytes:
    return hashlib.sha256(secrets.token_bytes(32)).digest()


@pytest.mark.parametrize(
    ("amount_msats", "hrp"),
    [
        (100_000_000_000, "lnbcrt1"),  # whole BTC, no multiplier: "lnbcrt11..." -> last '1'
        (200_000_000, "lnbcrt2m"),
        (250_000_000, "lnbcrt2500u"),
        (2_500_000, "lnbcrt25u"),
        (10_000, "lnbcrt100n"),  # 10 sats, the EP212 route A price
        (42_000, "lnbcrt420n"),
        (123, "lnbcrt1230p"),
        (1, "lnbcrt10p"),
    ],
)
def test_every_multiplier(
    key: PrivateKey, payment_hash: bytes, amount_msats: int, hrp: str
) -> None:
    invoice = make_invoice(key, amount_msats, payment_hash)
    assert invoice[: invoice.rfind("1")] == hrp
    decoded = decode_invoice(invoice)
    assert decoded.amount_msats == amount_msats
    assert decoded.network == "bcrt"
    assert decoded.payment_hash == payment_hash
    assert decoded.payee == key.public_key.format(compressed=True).hex()


@pytest.mark.parametrize(
    ("hrp", "expected"),
    [
        ("lnbc", ("bc", None)),
        ("lnbc100n", ("bc", 10_000)),
        ("lnbc2500u", ("bc", 250_000_000)),
        ("lnbc20m", ("bc", 2_000_000_000)),
        ("lnbc10p", ("bc", 1)),
        ("lnbc1", ("bc", 100_000_000_000)),
        ("lntb100n", ("tb", 10_000)),
        ("lntbs100n", ("tbs", 10_000)),
        ("lnbcrt", ("bcrt", None)),
        ("lnbcrt250u", ("bcrt", 25_000_000)),
    ],
)
def test_parse_hrp(hrp: str, expected: tuple[str, int | None]) -> None:
    assert parse_hrp(hrp) == expected


@pytest.mark.parametrize(
    ("hrp", "code"),
    [
        ("lnbc1p", "invalid_amount"),  # 0.1 msat
        ("lnbc15p", "invalid_amount"),
        ("lnbc0n", "invalid_amount"),
        ("lnbc10x", "invalid_amount"),
        ("lnbcn", "invalid_amount"),
        ("lnxy100n", "unknown_network"),
        ("bc100n", "invalid_hrp"),
    ],
)
def test_parse_hrp_refusals(hrp: str, code: str) -> None:
    with pytest.raises(InvoiceError) as info:
        parse_hrp(hrp)
    assert info.value.code == code


@pytest.mark.parametrize("network", ["bc", "tb", "tbs", "bcrt"])
def test_network_from_hrp(key: PrivateKey, payment_hash: bytes, network: str) -> None:
    decoded = decode_invoice(make_invoice(key, 10_000, payment_hash, network=network))
    assert decoded.network == network
    assert decoded.amount_msats == 10_000


def test_no_amount(key: PrivateKey, payment_hash: bytes) -> None:
    invoice = make_invoice(key, None, payment_hash)
    assert invoice.startswith("lnbcrt1")
    assert decode_invoice(invoice).amount_msats is None


def test_expiry(key: PrivateKey, payment_hash: bytes) -> None:
    now = int(time.time())
    stale = decode_invoice(make_invoice(key, 1000, payment_hash, timestamp=now - 7200, expiry=3600))
    assert stale.expires_at == now - 3600
    assert stale.is_expired(now)
    fresh = decode_invoice(make_invoice(key, 1000, payment_hash, timestamp=now, expiry=600))
    assert not fresh.is_expired(now + 599)
    assert fresh.is_expired(now + 600)


def test_bad_signature_against_payee_field(key: PrivateKey, payment_hash: bytes) -> None:
    invoice = make_invoice(key, 10_000, payment_hash, payee=PrivateKey())
    with pytest.raises(InvoiceError) as info:
        decode_invoice(invoice)
    assert info.value.code == "bad_signature"


def test_honest_payee_field_verifies(key: PrivateKey, payment_hash: bytes) -> None:
    decoded = decode_invoice(make_invoice(key, 10_000, payment_hash, payee=key))
    assert decoded.payee == key.public_key.format(compressed=True).hex()


def test_tampered_invoice_fails_checksum(key: PrivateKey, payment_hash: bytes) -> None:
    invoice = make_invoice(key, 10_000, payment_hash)
    position = len(invoice) - 10
    swapped = "q" if invoice[position] != "q" else "p"
    with pytest.raises(InvoiceError) as info:
        decode_invoice(invoice[:position] + swapped + invoice[position + 1 :])
    assert info.value.code == "invalid_bech32"


def test_lightning_prefix_and_upper_case(key: PrivateKey, payment_hash: bytes) -> None:
    invoice = make_invoice(key, 10_000, payment_hash)
    assert decode_invoice("lightning:" + invoice.upper()).amount_msats == 10_000
    with pytest.raises(InvoiceError) as info:
        decode_invoice(invoice[:10] + invoice[10:].upper())
    assert info.value.code == "invalid_bech32"


@pytest.mark.parametrize("text", ["", "lnbc", "not an invoice", "x" * 8000])
def test_garbage(text: str) -> None:
    with pytest.raises(InvoiceError):
        decode_invoice(text)


def test_macaroon_identifier_and_valid_until(payment_hash: bytes) -> None:
    caveats = ("services=ep212:0", "ep212_valid_until=2000000000", "ep212_valid_until=1900000000")
    info = inspect_macaroon(mint_macaroon(secrets.token_bytes(32), payment_hash, caveats))
    assert info.payment_hash == payment_hash
    assert len(info.token_id) == 32
    assert info.valid_until == 1_900_000_000


@pytest.mark.parametrize("text", ["", "!!!", "AgEEbHNhdA==", "MDAxY2xvY2F0aW9uIGxzYXQK"])
def test_bad_macaroon(text: str) -> None:
    with pytest.raises(ChallengeError) as info:
        inspect_macaroon(text)
    assert info.value.code == "invalid_macaroon"


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # str.isdigit() accepts it, int() does not
        "\u0661\u0662",  # Arabic-Indic digits: int() accepts them, the core does not
        "9" * 20,  # past the core's 19-digit unix-seconds rule
        "9" * 400,  # float() of it overflows (was raised after paying)
        "-1",
        "",
    ],
)
def test_unreadable_valid_until_is_a_challenge_error(payment_hash: bytes, value: str) -> None:
    caveats = ("services=ep212:0", f"ep212_valid_until={value}")
    with pytest.raises(ChallengeError) as info:
        inspect_macaroon(mint_macaroon(secrets.token_bytes(32), payment_hash, caveats))
    assert info.value.code == "invalid_caveat"


def test_valid_until_follows_the_core_rules(payment_hash: bytes) -> None:
    caveats = (
        "services=ep212:0",
        "not a condition",  # not condition=value: the seller's to judge, ignored
        "other_valid_until = 9999999999999999999 ",  # 19 digits, spaces trimmed like the core
        "ep212_capabilities=read",
    )
    info = inspect_macaroon(mint_macaroon(secrets.token_bytes(32), payment_hash, caveats))
    assert info.valid_until == 9_999_999_999_999_999_999
