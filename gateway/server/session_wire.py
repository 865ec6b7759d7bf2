"""The admin API's JSON shapes for Payment-scheme sessions, shared by the server and the CLI.

One module owns both directions (as admin_wire does for tokens), so
`l402-gateway sessions ... --via api` prints what `--via store` prints. A
session is described by its id (the deposit's payment hash: public, it is in
the deposit invoice), route, status, money and refund; never by a preimage
(the deposit preimage is the session's bearer secret) and never by the
buyer's return invoice, which can identify the buyer's node: only its
payment hash (to find the refund in LND) and its expiry are shown.

`page_json` and `shown` build a listing page and a show answer from the
store's SessionCatalog, for the API handler and the CLI's store path alike
(no aiohttp here: the CLI imports this module on every start).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.payment.bolt11 import read_invoice
from gateway.payment.errors import PaymentAuthError
from gateway.server.admin_wire import WireError
from gateway.store.roles import SessionCatalog
from gateway.store.session_catalog import REFUND_STATES, SESSION_STATUSES
from gateway.store.types import SessionCredit, SessionInfo

# Every key of a session object, in order (tests hold the MCP shapes to it).
SESSION_KEYS = (
    "session_id", "route", "status", "unit_msat", "opened_at", "last_activity", "closed_at",
    "close_reason", "balance_msat", "held_msat", "deposited_msat", "spent_msat", "refund_msat",
    "refund_state", "refund_fee_msat", "refund_note", "return_payment_hash",
    "return_invoice_expires_at",
)  # fmt: skip
_INTS = {"unit_msat", "opened_at", "last_activity", "balance_msat", "held_msat",
         "deposited_msat", "spent_msat"}  # fmt: skip
_OPTIONAL_INTS = {"closed_at", "refund_msat", "refund_fee_msat", "return_invoice_expires_at"}
_OPTIONAL_TEXTS = {"close_reason", "refund_state", "refund_note", "return_payment_hash"}
# An invoice quoted in an error text (LND's refusals may name the one it was given).
_INVOICE = re.compile(r"\bln[a-z]{2,6}[0-9]*[munp]?1[02-9ac-hj-np-z]{20,}", re.IGNORECASE)
NOTE_CHARS = 300


def _note(text: str | None) -> str | None:
    if text is None:
        return None
    return _INVOICE.sub("<invoice>", text)[:NOTE_CHARS]


def _return_invoice(text: str) -> tuple[str | None, int | None]:
    """(payment hash hex, expiry) of the return invoice; (None, None) if it does not decode."""
    try:
        facts = read_invoice(text)
    except PaymentAuthError:
        return None, None
    return facts.payment_hash.hex(), facts.timestamp + facts.expiry


def session_to_json(info: SessionInfo) -> dict[str, Any]:
    row = info.session
    return_hash, return_expires = _return_invoice(row.return_invoice)
    return {
        "session_id": row.session_id.hex(),
        "route": row.route,
        "status": row.status,
        "unit_msat": row.unit_msat,
        "opened_at": row.opened_at,
        "last_activity": row.last_activity,
        "closed_at": row.closed_at,
        "close_reason": row.close_reason,
        "balance_msat": row.balance_msat,
        "held_msat": row.held_msat,
        "deposited_msat": info.credited_msat,
        "spent_msat": info.spent_msat,
        "refund_msat": row.refund_msat,
        "refund_state": row.refund_state,
        "refund_fee_msat": row.refund_fee_msat,
        "refund_note": _note(row.refund_note),
        "return_payment_hash": return_hash,
        "return_invoice_expires_at": return_expires,
    }


def credit_to_json(credit: SessionCredit) -> dict[str, Any]:
    return {
        "payment_hash": credit.payment_hash.hex(),
        "amount_msat": credit.amount_msat,
        "credited_at": credit.credited_at,
    }


def page_json(infos: list[SessionInfo], limit: int) -> dict[str, Any]:
    """A page of a listing asked with `limit + 1` rows: the extra row says more exist."""
    page = [session_to_json(info) for info in infos[:limit]]
    more = len(infos) > limit and bool(page)
    return {
        "sessions": page,
        "next_cursor": SessionCursor.after(page[-1]).encode() if more else None,
    }


async def shown(store: SessionCatalog, session_id: bytes) -> dict[str, Any] | None:
    """`{"session", "deposits"}`, or None for an unknown session."""
    info = await store.find_session(session_id)
    if info is None:
        return None
    credits = await store.session_credits(session_id)
    return {"session": session_to_json(info), "deposits": [credit_to_json(c) for c in credits]}


def check_session(data: Any) -> dict[str, Any]:
    """A session object as the API wrote it (exactly its keys, each of its type)."""
    if not isinstance(data, dict) or set(data) != set(SESSION_KEYS):
        raise WireError("not a session")
    for key in _INTS:
        if not _is_int(data[key]):
            raise WireError(f"session: {key} is not an integer")
    for key in _OPTIONAL_INTS:
        if data[key] is not None and not _is_int(data[key]):
            raise WireError(f"session: {key} is not an integer")
    for key in _OPTIONAL_TEXTS | {"route", "status"}:
        if data[key] is not None and not isinstance(data[key], str):
            raise WireError(f"session: {key} is not a string")
    parse_session_id(data["session_id"])
    return data


def check_credit(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != {"payment_hash", "amount_msat", "credited_at"}:
        raise WireError("not a deposit")
    parse_session_id(data["payment_hash"])
    if not _is_int(data["amount_msat"]) or not _is_int(data["credited_at"]):
        raise WireError("deposit: amount_msat and credited_at must be integers")
    return data


def parse_session_id(text: Any) -> bytes:
    """A session id: the deposit's payment hash, exactly 64 hex characters."""
    if isinstance(text, str) and len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    raise WireError("expected a session id (64 hex characters: the deposit's payment hash)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_status(text: str | None) -> str | None:
    if text in (None, ""):
        return None
    if text not in SESSION_STATUSES:
        raise WireError(f"status must be one of: {', '.join(SESSION_STATUSES)}")
    return text


def parse_refund_state(text: str | None) -> str | None:
    if text in (None, ""):
        return None
    if text not in REFUND_STATES:
        raise WireError(f"refund must be one of: {', '.join(REFUND_STATES)}")
    return text


@dataclass(frozen=True)
class SessionCursor:
    """Where a session listing continues: the (opened_at, session_id) of the last row seen."""

    opened_at: int
    session_id: bytes

    def encode(self) -> str:
        return f"{self.opened_at}-{self.session_id.hex()}"

    @classmethod
    def decode(cls, text: str) -> SessionCursor:
        opened, sep, session = text.partition("-")
        if not sep or not opened.isdigit() or len(opened) > 12:
            raise WireError("bad cursor")
        return cls(int(opened), parse_session_id(session))

    @classmethod
    def after(cls, session: dict[str, Any]) -> SessionCursor:
        return cls(int(session["opened_at"]), bytes.fromhex(session["session_id"]))

    @property
    def before(self) -> tuple[int, bytes]:
        return self.opened_at, self.session_id
