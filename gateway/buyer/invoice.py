"""BOLT11 decoding and the checks a buyer must make before paying.

The `bolt11` package checks the bech32 checksum and the signature (verifying
against `n` when present, else recovering the payee). We parse the amount
from the human-readable part ourselves with integer arithmetic and cross-check
it with the package: the harness this replaces cut the HRP at the FIRST '1'
and so read `lnbc100n1...` as "no amount". The separator is the LAST '1'.

The macaroon's identifier carries the payment hash the seller will check the
preimage against; an invoice whose hash differs would buy nothing, so the
buyer compares them before paying (see `Quote.hash_matches`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import bolt11
from bolt11 import exceptions as bolt11_errors

from gateway.buyer.errors import ChallengeError, InvoiceError
from gateway.l402 import caveats as caveat_rules
from gateway.l402 import macaroons
from gateway.l402.errors import L402Error
from gateway.l402.identifier import Identifier

MAX_INVOICE_LEN = 7_089  # what LND accepts (BOLT11 has no limit; bech32 checksums weaken past it)
# Longest prefix first: "bcrt" before "bc", "tbs" before "tb".
NETWORKS = ("bcrt", "bc", "tbs", "tb", "sb")
_AMOUNT = re.compile(r"([0-9]+)([munp]?)")
# msats per unit of the HRP amount; BTC = 10^11 msat. 'p' is handled apart (1p = 0.1 msat).
_MSAT_PER_UNIT = {"": 10**11, "m": 10**8, "u": 10**5, "n": 10**2}

_ERROR_CODES: tuple[tuple[type[Exception], str], ...] = (
    (bolt11_errors.Bolt11Bech32InvalidException, "invalid_bech32"),
    (bolt11_errors.Bolt11SignatureVerifyException, "bad_signature"),
    (bolt11_errors.Bolt11SignatureTooShortException, "malformed"),
    (bolt11_errors.Bolt11AmountInvalidException, "invalid_amount"),
    (bolt11_errors.Bolt11HrpInvalidException, "invalid_hrp"),
    (bolt11_errors.Bolt11NoPaymentHashException, "missing_payment_hash"),
    (bolt11_errors.Bolt11NoPaymentSecretException, "missing_payment_secret"),
    (bolt11_errors.Bolt11DescriptionException, "missing_description"),
    (bolt11_errors.Bolt11NoSignatureException, "bad_signature"),
)


@dataclass(frozen=True)
class DecodedInvoice:
    """The facts of a BOLT11 invoice the policy needs."""

    bolt11: str = field(repr=False)
    network: str
    amount_msats: int | None
    payment_hash: bytes
    timestamp: int
    expiry_seconds: int
    payee: str
    description: str | None

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry_seconds

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def parse_hrp(hrp: str) -> tuple[str, int | None]:
    """`lnbcrt100n` -> ("bcrt", 10000): network and amount in msat (None when absent)."""
    if not hrp.startswith("ln"):
        raise InvoiceError("invalid_hrp", "invoice prefix is not 'ln'")
    rest = hrp[2:]
    network = next((n for n in NETWORKS if rest.startswith(n)), None)
    if network is None:
        raise InvoiceError("unknown_network", f"unknown currency prefix in {hrp!r}")
    amount_text = rest[len(network) :]
    if not amount_text:
        return network, None
    match = _AMOUNT.fullmatch(amount_text)
    if match is None:
        raise InvoiceError("invalid_amount", f"unreadable amount {amount_text!r}")
    value, unit = int(match.group(1)), match.group(2)
    if unit == "p":
        if value % 10:
            raise InvoiceError("invalid_amount", "pico amount is not a whole millisatoshi")
        msats = value // 10
    else:
        msats = value * _MSAT_PER_UNIT[unit]
    if msats <= 0:
        raise InvoiceError("invalid_amount", "invoice amount is zero")
    return network, msats


def decode_invoice(text: str) -> DecodedInvoice:
    """Decode and signature-check a BOLT11 invoice; every failure is an `InvoiceError`."""
    invoice = text.strip()
    if invoice.lower().startswith("lightning:"):
        invoice = invoice[len("lightning:") :]
    if not invoice:
        raise InvoiceError("malformed", "empty invoice")
    if len(invoice) > MAX_INVOICE_LEN:
        raise InvoiceError("too_long", "invoice is longer than any wallet accepts")
    if invoice != invoice.lower() and invoice != invoice.upper():
        raise InvoiceError("invalid_bech32", "invoice mixes upper and lower case")
    invoice = invoice.lower()
    separator = invoice.rfind("1")
    if separator < 3:
        raise InvoiceError("invalid_bech32", "invoice has no bech32 separator")
    network, amount = parse_hrp(invoice[:separator])
    if network == "sb":
        raise InvoiceError("unknown_network", "simnet invoices are not supported")
    try:
        decoded = bolt11.decode(invoice)
    except Exception as exc:  # the package raises its own and bitstring/coincurve types
        code = next((c for kind, c in _ERROR_CODES if isinstance(exc, kind)), "malformed")
        raise InvoiceError(code, f"invoice rejected: {exc}") from None
    package_amount = None if decoded.amount_msat is None else int(decoded.amount_msat)
    if decoded.currency != network or package_amount != amount:
        raise InvoiceError("amount_mismatch", "HRP parse disagrees with the bolt11 decoder")
    try:
        payment_hash = bytes.fromhex(decoded.payment_hash)
    except ValueError:
        raise InvoiceError("missing_payment_hash", "invoice payment hash unreadable") from None
    if len(payment_hash) != 32:
        raise InvoiceError("missing_payment_hash", "invoice payment hash is not 32 bytes")
    return DecodedInvoice(
        bolt11=invoice,
        network=network,
        amount_msats=amount,
        payment_hash=payment_hash,
        timestamp=int(decoded.date),
        expiry_seconds=int(decoded.expiry),
        payee=str(decoded.payee),
        description=decoded.description,
    )


@dataclass(frozen=True)
class TokenInfo:
    """What a buyer reads from the seller's macaroon (no secrets)."""

    payment_hash: bytes
    token_id: bytes
    valid_until: int | None


def inspect_macaroon(text: str) -> TokenInfo:
    """Strictly decode the challenge macaroon and its Aperture identifier.

    Caveats are read with the core's rules (`gateway.l402.caveats`). The buyer
    enforces none of them; it only reads `<service>_valid_until` (the earliest
    one bounds how long the credential is cached). A caveat that is not
    `condition=value` is ignored: it is the seller's to judge. A
    `*_valid_until` caveat whose value is not 1-19 ASCII digits (the core's
    unix-seconds rule, which its verifier enforces for every service) is a
    `ChallengeError("invalid_caveat")`: the token could never be accepted, so
    the buyer refuses before paying rather than buy it.
    """
    try:
        decoded = macaroons.decode(text)
        identifier = Identifier.decode(decoded.identifier)
    except L402Error as exc:
        raise ChallengeError("invalid_macaroon", exc.detail) from None
    valid_until: int | None = None
    for caveat in decoded.caveats:
        try:
            condition, value = caveat_rules.split(caveat)
        except L402Error:
            continue
        if not condition.endswith(caveat_rules.VALID_UNTIL_SUFFIX):
            continue
        try:
            stamp = caveat_rules._unix(value)
        except L402Error as exc:
            raise ChallengeError("invalid_caveat", f"{condition[:40]!r}: {exc.detail}") from None
        valid_until = stamp if valid_until is None else min(valid_until, stamp)
    return TokenInfo(identifier.payment_hash, identifier.token_id, valid_until)


@dataclass(frozen=True)
class Quote:
    """A priced offer: the invoice plus what the challenge claims about it."""

    invoice: DecodedInvoice
    token_payment_hash: bytes
    advertised_amount_msats: int | None = None

    @property
    def amount_msats(self) -> int | None:
        return self.invoice.amount_msats

    @property
    def hash_matches(self) -> bool:
        return self.invoice.payment_hash == self.token_payment_hash

    @property
    def advertised_amount_matches(self) -> bool:
        advertised = self.advertised_amount_msats
        return advertised is None or advertised == self.invoice.amount_msats
