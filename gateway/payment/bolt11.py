"""A standard-library BOLT11 reader: the facts a Payment seller checks, no signature.

The seller never pays these invoices itself at verification time; it needs
their network, amount, timestamp, expiry and payment hash:
- a charge request may omit `methodDetails.paymentHash`, the invoice being
  authoritative (draft-lightning-charge section 7.2), and the effective
  expiry of a challenge is the earlier of `expires` and the invoice's own;
- a session's return invoice must have no amount (or 0), be on the deposit
  invoice's network and not be expired (draft-lightning-session, open
  verification step 7).
The bech32 checksum is verified so a mangled invoice is refused here; the
payee signature is not (that needs secp256k1, outside the standard library):
the seller's own LND decodes and checks the return invoice when it pays the
refund, and its own invoices are bound by the challenge HMAC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.payment.errors import PaymentAuthError, Reason

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUE = {ch: i for i, ch in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# Longest prefix first: "bcrt" before "bc", "tbs" before "tb".
NETWORKS = (
    ("bcrt", "regtest"),
    ("bc", "mainnet"),
    ("tbs", "signet"),
    ("tb", "testnet"),
    ("sb", "simnet"),
)
_AMOUNT = re.compile(r"(0|[1-9][0-9]*)([munp]?)")
_MSAT_PER_UNIT = {"": 10**11, "m": 10**8, "u": 10**5, "n": 10**2}
MAX_INVOICE_CHARS = 7_089
DEFAULT_EXPIRY = 3600
_TAG_PAYMENT_HASH, _TAG_EXPIRY = 1, 6
_SIGNATURE_WORDS = 104  # 65 bytes


@dataclass(frozen=True)
class InvoiceFacts:
    network: str  # mainnet, testnet, signet, regtest, simnet
    amount_msat: int | None  # None: the invoice names no amount
    timestamp: int
    expiry: int
    payment_hash: bytes

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_INVOICE, detail)


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                check ^= _GENERATOR[i]
    return check


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _amount(text: str) -> int | None:
    if not text:
        return None
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise _bad("the amount in the prefix is not a BOLT11 amount")
    number, unit = int(match.group(1)), match.group(2)
    if unit == "p":
        if number % 10:
            raise _bad("a pico-bitcoin amount must be a whole number of millisatoshis")
        return number // 10
    return number * _MSAT_PER_UNIT[unit]


def _int(words: list[int]) -> int:
    value = 0
    for word in words:
        value = value << 5 | word
    return value


def _bytes(words: list[int]) -> bytes:
    bits = _int(words)
    nbits = len(words) * 5
    return (bits >> (nbits % 8)).to_bytes(nbits // 8, "big")


def read_invoice(text: str) -> InvoiceFacts:
    """Network, amount, timestamp, expiry and payment hash of a BOLT11 invoice."""
    if len(text) > MAX_INVOICE_CHARS:
        raise _bad("invoice is too long")
    if text.lower() != text and text.upper() != text:
        raise _bad("invoice mixes upper and lower case")
    invoice = text.lower()
    hrp, sep, data = invoice.rpartition("1")
    if not sep or not hrp.startswith("ln") or len(data) < 7 + _SIGNATURE_WORDS + 6:
        raise _bad("not a BOLT11 invoice")
    if any(ch not in _VALUE for ch in data) or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise _bad("invoice holds characters outside bech32")
    words = [_VALUE[ch] for ch in data]
    if _polymod(_hrp_expand(hrp) + words) != 1:
        raise _bad("bech32 checksum does not match")
    rest = hrp[2:]
    network = next(((p, name) for p, name in NETWORKS if rest.startswith(p)), None)
    if network is None:
        raise _bad("unknown network prefix")
    amount = _amount(rest[len(network[0]) :])
    fields = words[7 : -(_SIGNATURE_WORDS + 6)]
    timestamp = _int(words[:7])
    payment_hash: bytes | None = None
    expiry = DEFAULT_EXPIRY
    pos = 0
    while pos < len(fields):
        if pos + 3 > len(fields):
            raise _bad("a tagged field is cut off")
        tag, length = fields[pos], _int(fields[pos + 1 : pos + 3])
        body = fields[pos + 3 : pos + 3 + length]
        if len(body) != length:
            raise _bad("a tagged field is cut off")
        if tag == _TAG_PAYMENT_HASH and length == 52 and payment_hash is None:
            payment_hash = _bytes(body)
        elif tag == _TAG_EXPIRY and length:
            expiry = _int(body)
        pos += 3 + length
    if payment_hash is None:
        raise _bad("invoice has no payment hash")
    return InvoiceFacts(network[1], amount, timestamp, expiry, payment_hash)
