"""Metered bundles as a buyer sees them: the seller's `L402-Balance` header on each answer.

A seller that sells bundles (a payment buys N tokens, requests, bytes...)
says on every answer what is left (gateway.metering.balanceheader): the
units still available to new requests and what this request holds until it
settles. The buyer keeps the bundle's credential in its cache like any
reusable token, reports the balance, and, when the seller answers a cached
credential with a 402 that carries the header (the bundle ran dry), pays that
402's fresh challenge under the same spend policy (gateway.buyer.client).

The header is read strictly; a malformed one is treated as absent (the
seller's bookkeeping is then not reported, never guessed).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.metering.balanceheader import BALANCE_HEADER, BalanceReport, parse_balance


def balance_of(headers: Mapping[str, str]) -> BalanceReport | None:
    """The answer's balance, or None when it has no (well-formed) L402-Balance."""
    value = headers.get(BALANCE_HEADER)
    if value is None:
        return None
    try:
        return parse_balance(value)
    except ValueError:
        return None


def balance_json(balance: BalanceReport | None) -> dict[str, object] | None:
    if balance is None:
        return None
    return {"available": balance.available, "unit": balance.unit, "reserved": balance.reserved}
