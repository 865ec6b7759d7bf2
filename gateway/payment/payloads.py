"""The Lightning method's credential payloads: charge, and the four session actions.

charge:  {"preimage": hex}
session: {"action": "open",   "preimage": hex, "returnInvoice": bolt11}
         {"action": "bearer", "sessionId": hex, "preimage": hex}
         {"action": "topUp",  "sessionId": hex, "topUpPreimage": hex}
         {"action": "close",  "sessionId": hex, "preimage": hex}

Preimages and session ids (payment hashes) are exactly 64 LOWERCASE hex
characters: the charge draft requires lowercase, and one accepted spelling
per value keeps logs, stores and comparisons unambiguous. Unknown fields are
ignored (the session draft requires it). A wrong type or a missing field is
MALFORMED_CREDENTIAL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.payment.errors import PaymentAuthError, Reason

_HEX64 = re.compile(r"[0-9a-f]{64}")


class Action(StrEnum):
    OPEN = "open"
    BEARER = "bearer"
    TOP_UP = "topUp"
    CLOSE = "close"


@dataclass(frozen=True)
class ChargePayload:
    preimage: bytes = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"preimage": self.preimage.hex()}


@dataclass(frozen=True)
class OpenPayload:
    preimage: bytes = field(repr=False)
    return_invoice: str

    action = Action.OPEN

    def to_json(self) -> dict[str, str]:
        return {
            "action": self.action.value,
            "preimage": self.preimage.hex(),
            "returnInvoice": self.return_invoice,
        }


@dataclass(frozen=True)
class BearerPayload:
    session_id: bytes
    preimage: bytes = field(repr=False)

    action = Action.BEARER

    def to_json(self) -> dict[str, str]:
        return {
            "action": self.action.value,
            "sessionId": self.session_id.hex(),
            "preimage": self.preimage.hex(),
        }


@dataclass(frozen=True)
class TopUpPayload:
    session_id: bytes
    top_up_preimage: bytes = field(repr=False)

    action = Action.TOP_UP

    def to_json(self) -> dict[str, str]:
        return {
            "action": self.action.value,
            "sessionId": self.session_id.hex(),
            "topUpPreimage": self.top_up_preimage.hex(),
        }


@dataclass(frozen=True)
class ClosePayload:
    session_id: bytes
    preimage: bytes = field(repr=False)

    action = Action.CLOSE

    def to_json(self) -> dict[str, str]:
        return {
            "action": self.action.value,
            "sessionId": self.session_id.hex(),
            "preimage": self.preimage.hex(),
        }


SessionPayload = OpenPayload | BearerPayload | TopUpPayload | ClosePayload


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_CREDENTIAL, detail)


def hex32(payload: Mapping[str, Any], name: str) -> bytes:
    """A required 64-lowercase-hex field as 32 bytes."""
    value = payload.get(name)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(f"payload.{name} is not 64 lowercase hex characters")
    return bytes.fromhex(value)


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"payload.{name} is missing or not a string")
    return value


def parse_charge_payload(payload: Mapping[str, Any]) -> ChargePayload:
    return ChargePayload(hex32(payload, "preimage"))


def parse_session_payload(payload: Mapping[str, Any]) -> SessionPayload:
    action = payload.get("action")
    if action == Action.OPEN:
        return OpenPayload(hex32(payload, "preimage"), _text(payload, "returnInvoice"))
    if action == Action.BEARER:
        return BearerPayload(hex32(payload, "sessionId"), hex32(payload, "preimage"))
    if action == Action.TOP_UP:
        return TopUpPayload(hex32(payload, "sessionId"), hex32(payload, "topUpPreimage"))
    if action == Action.CLOSE:
        return ClosePayload(hex32(payload, "sessionId"), hex32(payload, "preimage"))
    raise _bad("payload.action is not one of open, bearer, topUp, close")
