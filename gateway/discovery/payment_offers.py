"""The Payment scheme's offers in discovery: `x-payment-info` (draft-payment-discovery-00).

A route that sells the Payment scheme (`schemes: [..., payment]`) carries, on
each OpenAPI operation it serves, the draft's multi-offer form: one offer per
intent its 402 offers (gateway.paywall.mpp.offers): `charge`, and `session`
when sessions are enabled. Each offer has exactly the draft's members
(`intent`, `method`, `amount`, `currency`, `description`; the draft's schema
allows no others): method `lightning`, currency `sat`, `amount` the price in
whole satoshis as the challenge will carry it (rounded up from msat), or null
for a route whose price comes from a pricing hook. A session's `amount` is
the price of one request; its deposit and idle timeout go in `description`.
The 402 challenge stays authoritative (the draft says so too). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from gateway.config.model import PaymentConfig, Route
from gateway.payment import lightning
from gateway.paywall.mpp.offers import price_sats


def _sats(msat: int) -> str:
    return str(price_sats(msat))


def _charge(route: Route) -> dict[str, Any]:
    offer: dict[str, Any] = {"intent": lightning.CHARGE, "method": lightning.METHOD}
    if route.pricing is None:
        offer.update(amount=_sats(route.price_msat), currency=lightning.CURRENCY)
        offer["description"] = "one request per payment"
        return offer
    hook = route.pricing
    offer.update(amount=None, currency=lightning.CURRENCY)
    offer["description"] = (
        f"one request per payment; priced per request, {_sats(hook.max_msat)} sat at most"
        f" ({_sats(hook.fallback_msat)} sat when the pricing service does not answer)"
    )
    return offer


def _session(route: Route, payment: PaymentConfig) -> dict[str, Any]:
    sessions = payment.sessions
    offer: dict[str, Any] = {"intent": lightning.SESSION, "method": lightning.METHOD}
    refund = (
        f"the unspent balance is refunded at the close, or after"
        f" {sessions.idle_timeout_seconds} s idle"
    )
    if route.pricing is None:
        unit = price_sats(route.price_msat)
        deposit = lightning.deposit_sats(unit, sessions.deposit_multiplier)
        offer.update(amount=str(unit), currency=lightning.CURRENCY)
        offer["description"] = (
            f"per request, from a prepaid deposit of {deposit} sat"
            f" ({sessions.deposit_multiplier} requests); {refund}"
        )
        return offer
    offer.update(amount=None, currency=lightning.CURRENCY)
    offer["description"] = (
        f"per request, priced when the session opens, from a prepaid deposit of"
        f" {sessions.deposit_multiplier} requests; {refund}"
    )
    return offer


def payment_offers(route: Route, payment: PaymentConfig) -> list[dict[str, Any]]:
    """The route's offers in the draft's shape; [] when it does not sell the Payment scheme."""
    if route.is_free or not route.sells_payment:
        return []
    offers = [_charge(route)]
    if payment.sessions.enabled:
        offers.append(_session(route, payment))
    return offers


def payment_info(route: Route, payment: PaymentConfig) -> dict[str, Any] | None:
    """`x-payment-info` (multi-offer form, as the draft asks of new documents), or None."""
    offers = payment_offers(route, payment)
    return {"offers": offers} if offers else None
