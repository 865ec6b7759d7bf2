"""The `lightning` method's request objects: charge and session (units: satoshis).

charge  (draft-lightning-charge section 7):
  {"amount": "<sats>", "currency": "sat", "description"?, "recipient"?, "externalId"?,
   "methodDetails": {"invoice": bolt11, "paymentHash"?: hex, "network"?: name}}
session (draft-lightning-session section 7):
  {"amount": "<sats per unit>", "currency": "sat", "description"?, "unitType"?,
   "depositInvoice"?: bolt11, "paymentHash": hex, "depositAmount"?: "<sats>",
   "idleTimeout"?: "<seconds>"}

Amounts are positive decimal strings without leading zeros; `paymentHash` is
64 lowercase hex. The invoice is authoritative: `consistency_problem` says
whether the convenience fields (paymentHash, network, amount, depositAmount)
match it, which a client MUST check before paying and a seller before
issuing. Aperture v0.5.0 emits exactly these fields (charge: amount,
currency, methodDetails{invoice, paymentHash, network}; session: amount,
currency, depositInvoice, paymentHash, depositAmount, idleTimeout).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.payment.bolt11 import InvoiceFacts
from gateway.payment.errors import PaymentAuthError, Reason

METHOD = "lightning"
CHARGE = "charge"
SESSION = "session"
CURRENCY = "sat"
NETWORK_NAMES = frozenset({"mainnet", "regtest", "signet", "testnet", "simnet"})
DEFAULT_DEPOSIT_MULTIPLIER = 20  # the session draft's recommendation, Aperture's default
DEFAULT_IDLE_TIMEOUT = 300  # seconds: the draft's recommendation, Aperture's default
_DECIMAL = re.compile(r"[1-9][0-9]{0,17}")  # positive, below 10^18 (int64-safe)
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_SATS = 2_100_000_000_000_000


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_REQUEST, detail)


def _opt_text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{name} is not a string")
    return value


def _sats(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise _bad(f"{name} is not a positive decimal string")
    return int(value)


def _opt_sats(obj: Mapping[str, Any], name: str) -> int | None:
    return None if obj.get(name) is None else _sats(obj, name)


def _hash(obj: Mapping[str, Any], name: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(f"{name} is not 64 lowercase hex characters")
    return bytes.fromhex(value)


def _opt_hash(obj: Mapping[str, Any], name: str) -> bytes | None:
    return None if obj.get(name) is None else _hash(obj, name)


def _currency(obj: Mapping[str, Any]) -> None:
    if obj.get("currency") != CURRENCY:
        raise _bad('currency is not "sat"')


@dataclass(frozen=True)
class ChargeRequest:
    amount_sats: int
    invoice: str
    payment_hash: bytes | None = None
    network: str | None = None
    description: str | None = None
    recipient: str | None = None
    external_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        details: dict[str, Any] = {"invoice": self.invoice}
        if self.payment_hash is not None:
            details["paymentHash"] = self.payment_hash.hex()
        if self.network is not None:
            details["network"] = self.network
        out: dict[str, Any] = {
            "amount": str(self.amount_sats),
            "currency": CURRENCY,
            "methodDetails": details,
        }
        for key, value in (
            ("description", self.description),
            ("recipient", self.recipient),
            ("externalId", self.external_id),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class SessionRequest:
    amount_sats: int  # per unit of service
    payment_hash: bytes  # of the deposit invoice
    deposit_invoice: str | None = None
    deposit_sats: int | None = None
    idle_timeout: int | None = None  # seconds
    description: str | None = None
    unit_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "amount": str(self.amount_sats),
            "currency": CURRENCY,
            "paymentHash": self.payment_hash.hex(),
        }
        for key, value in (
            ("depositInvoice", self.deposit_invoice),
            ("depositAmount", None if self.deposit_sats is None else str(self.deposit_sats)),
            ("idleTimeout", None if self.idle_timeout is None else str(self.idle_timeout)),
            ("description", self.description),
            ("unitType", self.unit_type),
        ):
            if value is not None:
                out[key] = value
        return out


def parse_charge_request(obj: Mapping[str, Any]) -> ChargeRequest:
    """A charge request object; raises MALFORMED_REQUEST."""
    _currency(obj)
    amount = _sats(obj, "amount")
    details = obj.get("methodDetails")
    if not isinstance(details, dict):
        raise _bad("methodDetails is missing or not an object")
    invoice = details.get("invoice")
    if not isinstance(invoice, str) or not invoice:
        raise _bad("methodDetails.invoice is missing")
    network = _opt_text(details, "network")
    if network is not None and network not in NETWORK_NAMES:
        raise _bad("methodDetails.network is not a known network")
    return ChargeRequest(
        amount_sats=amount,
        invoice=invoice,
        payment_hash=_opt_hash(details, "paymentHash"),
        network=network,
        description=_opt_text(obj, "description"),
        recipient=_opt_text(obj, "recipient"),
        external_id=_opt_text(obj, "externalId"),
    )


def parse_session_request(obj: Mapping[str, Any]) -> SessionRequest:
    """A session request object; raises MALFORMED_REQUEST."""
    _currency(obj)
    amount = _sats(obj, "amount")
    payment_hash = _hash(obj, "paymentHash")
    idle = obj.get("idleTimeout")
    if idle is not None and (
        not isinstance(idle, str) or not re.fullmatch(r"0|[1-9][0-9]{0,9}", idle)
    ):
        raise _bad("idleTimeout is not a decimal string of seconds")
    invoice = _opt_text(obj, "depositInvoice")
    if invoice == "":
        raise _bad("depositInvoice is empty")
    return SessionRequest(
        amount_sats=amount,
        payment_hash=payment_hash,
        deposit_invoice=invoice,
        deposit_sats=_opt_sats(obj, "depositAmount"),
        idle_timeout=None if idle is None else int(idle),
        description=_opt_text(obj, "description"),
        unit_type=_opt_text(obj, "unitType"),
    )


def deposit_sats(price_sats: int, multiplier: int = DEFAULT_DEPOSIT_MULTIPLIER) -> int:
    """price x multiplier, the deposit a session challenge asks for (Aperture's rule)."""
    if price_sats <= 0 or multiplier <= 0:
        raise ValueError("price and multiplier must be positive")
    deposit = price_sats * multiplier
    if deposit > MAX_SATS:
        raise ValueError("deposit exceeds 21 million bitcoin")
    return deposit


def _amount_sats(facts: InvoiceFacts) -> int | None:
    if facts.amount_msat is None or facts.amount_msat % 1000:
        return None
    return facts.amount_msat // 1000


def charge_problem(request: ChargeRequest, facts: InvoiceFacts) -> str | None:
    """Why the charge request disagrees with its invoice, or None when consistent."""
    if _amount_sats(facts) != request.amount_sats:
        return "the invoice amount is not the request's amount in whole sats"
    if request.payment_hash is not None and request.payment_hash != facts.payment_hash:
        return "paymentHash is not the invoice's payment hash"
    if (request.network or "mainnet") != facts.network:
        return "network is not the invoice's network"
    return None


def session_problem(request: SessionRequest, facts: InvoiceFacts) -> str | None:
    """Why the session request disagrees with its deposit invoice, or None."""
    deposit = _amount_sats(facts)
    if deposit is None:
        return "the deposit invoice has no whole-sat amount"
    if request.payment_hash != facts.payment_hash:
        return "paymentHash is not the deposit invoice's payment hash"
    if request.deposit_sats is not None and request.deposit_sats != deposit:
        return "depositAmount is not the deposit invoice's amount"
    if deposit < request.amount_sats:
        return "the deposit does not cover one unit of service"
    return None
