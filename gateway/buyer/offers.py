"""Which scheme to answer a 402 with, and what a Payment offer really asks for.

A seller may offer L402 and Payment (MPP) challenges in one 402 (Aperture
with `authscheme: l402+mpp` sends LSAT, L402, a Payment charge and a Payment
session). `SchemePreference` orders the schemes the buyer will use; the
default `l402,payment` keeps the L402 behaviour unchanged wherever L402 is
offered (and an L402 token is reusable: cached, it pays once for many
requests, where a Payment charge pays every request). `payment,l402` prefers
the Payment scheme. A scheme not in the preference is never used.

Before any money moves, a Payment offer's request object is decoded, its
BOLT11 invoice decoded with the signature checked (`invoice.decode_invoice`),
and the request's convenience fields cross-checked against the invoice: the
policy then sees a `Quote` whose hash/amount checks fail when they disagree
(draft-lightning-charge section 7.2: clients MUST reject such challenges).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.buyer.errors import ChallengeError, InvoiceError
from gateway.buyer.invoice import DecodedInvoice, Quote, decode_invoice
from gateway.payment import lightning, wwwauth
from gateway.payment.challenge import ChallengeParams, parse_time
from gateway.payment.errors import PaymentAuthError

NETWORK_PREFIX = {
    "mainnet": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt", "simnet": "sb",
}  # fmt: skip


class Scheme(StrEnum):
    L402 = "l402"  # L402 (or LSAT) macaroon + invoice
    PAYMENT = "payment"  # the Payment HTTP authentication scheme (MPP)


DEFAULT_PREFERENCE: tuple[Scheme, ...] = (Scheme.L402, Scheme.PAYMENT)


def parse_preference(text: str) -> tuple[Scheme, ...]:
    """`"payment,l402"` -> (PAYMENT, L402); ValueError on unknown or repeated names."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    try:
        schemes = tuple(Scheme(name) for name in names)
    except ValueError:
        raise ValueError("schemes are l402 and payment, comma-separated") from None
    if not schemes or len(set(schemes)) != len(schemes):
        raise ValueError("name each scheme at most once")
    return schemes


def _has_l402(values: Sequence[str]) -> bool:
    from gateway.buyer.challenge import parse_challenge

    try:
        parse_challenge(values)
    except ChallengeError:
        return False
    return True


def payment_offers(values: Iterable[str]) -> list[ChallengeParams]:
    """Every lightning Payment offer in the WWW-Authenticate values ([] when none/invalid)."""
    try:
        offers = wwwauth.parse_challenges(list(values))
    except PaymentAuthError:
        return []
    return [o for o in offers if o.method == lightning.METHOD]


def choose(values: Sequence[str], preference: Sequence[Scheme], intent: str) -> Scheme | None:
    """The first preferred scheme the 402 offers (Payment: with `intent`), else None."""
    for scheme in preference:
        if scheme is Scheme.L402 and _has_l402(values):
            return scheme
        if scheme is Scheme.PAYMENT and any(o.intent == intent for o in payment_offers(values)):
            return scheme
    return None


@dataclass(frozen=True)
class ChargeOffer:
    params: ChallengeParams
    request: lightning.ChargeRequest
    quote: Quote


@dataclass(frozen=True)
class SessionOffer:
    params: ChallengeParams
    request: lightning.SessionRequest
    deposit: Quote  # the deposit invoice
    invoice: DecodedInvoice


def _decode(invoice: str, params: ChallengeParams) -> DecodedInvoice:
    decoded = decode_invoice(invoice)
    if params.expires is not None:
        try:
            parse_time(params.expires)
        except PaymentAuthError as exc:
            raise ChallengeError("malformed_challenge", exc.detail) from None
    return decoded


def _network_matches(network: str | None, decoded: DecodedInvoice) -> bool:
    return NETWORK_PREFIX.get(network or "mainnet") == decoded.network


def charge_offer(params: ChallengeParams) -> ChargeOffer:
    """The charge offer's request and a Quote whose checks fail on any inconsistency."""
    try:
        request = lightning.parse_charge_request(params.request_object())
    except PaymentAuthError as exc:
        raise ChallengeError("malformed_request", exc.detail) from None
    decoded = _decode(request.invoice, params)
    claimed_hash = decoded.payment_hash if request.payment_hash is None else request.payment_hash
    if not _network_matches(request.network, decoded):
        claimed_hash = b""  # a network claim the invoice contradicts: never a match
    quote = Quote(decoded, claimed_hash, request.amount_sats * 1000)
    return ChargeOffer(params, request, quote)


def session_offer(params: ChallengeParams) -> SessionOffer:
    """The session offer (deposit invoice required) and its deposit Quote."""
    try:
        request = lightning.parse_session_request(params.request_object())
    except PaymentAuthError as exc:
        raise ChallengeError("malformed_request", exc.detail) from None
    if request.deposit_invoice is None:
        raise ChallengeError("malformed_request", "the session offer carries no deposit invoice")
    decoded = _decode(request.deposit_invoice, params)
    advertised = None if request.deposit_sats is None else request.deposit_sats * 1000
    quote = Quote(decoded, request.payment_hash, advertised)
    return SessionOffer(params, request, quote, decoded)


def first_offer(values: Iterable[str], intent: str) -> ChallengeParams:
    for offer in payment_offers(values):
        if offer.intent == intent:
            return offer
    raise ChallengeError("no_payment_challenge", f"no lightning Payment {intent} offer in the 402")


__all__ = [
    "DEFAULT_PREFERENCE",
    "ChargeOffer",
    "InvoiceError",
    "Scheme",
    "SessionOffer",
    "charge_offer",
    "choose",
    "first_offer",
    "parse_preference",
    "payment_offers",
    "session_offer",
]
