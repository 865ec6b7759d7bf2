"""The admin API's JSON shapes, shared by the server (admin_api) and the CLI's client.

One module owns both directions so the CLI reads exactly what the server
writes. Nothing secret crosses here: a token is described by its id, payment
hash, route and timestamps, never by its root key or a preimage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.store.types import Balance, ReportRow, TokenInfo

if TYPE_CHECKING:  # annotations only: the CLI's parser imports this module
    from gateway.config.model import Route

MAX_PAGE = 1000  # tokens per listing page (the API's bound per call)
DEFAULT_PAGE = 100


class WireError(ValueError):
    """A value in an admin API request or answer is not of the documented shape."""


def token_state(info: TokenInfo) -> str:
    """One word for a person: revoked > used > paid > unpaid (the first that applies)."""
    if info.revoked_at is not None:
        return "revoked"
    if info.used_at is not None:
        return "used"
    if info.settled_at is not None:
        return "paid"
    return "unpaid"


def balance_to_json(balance: Balance) -> dict[str, Any]:
    """A metered balance: what is left (`units`), what live reservations hold (`held`), what
    a new request may reserve (`available`), and its history (`credited`, `debited`)."""
    return {
        "balance_id": balance.balance_id.hex(),
        "route": balance.scope,
        "unit": balance.unit,
        "units": balance.units,
        "held": balance.held,
        "available": balance.available,
        "credited": balance.credited,
        "debited": balance.debited,
        "created_at": balance.created_at,
        "updated_at": balance.updated_at,
    }


def token_to_json(info: TokenInfo) -> dict[str, Any]:
    return {
        "token_id": info.token_id.hex(),
        "payment_hash": info.payment_hash.hex(),
        "route": info.route,
        "state": token_state(info),
        "price_msat": info.price_msat,
        "single_use": info.single_use,
        "created_at": info.created_at,
        "valid_until": info.valid_until,
        "paid_at": info.settled_at,
        "amt_paid_msat": info.amt_paid_msat,
        "used_at": info.used_at,
        "revoked_at": info.revoked_at,
        "imported": info.imported,
    }


def token_from_json(data: Any) -> TokenInfo:
    try:
        return TokenInfo(
            token_id=parse_id(data["token_id"]),
            payment_hash=parse_id(data["payment_hash"]),
            route=str(data["route"]),
            price_msat=int(data["price_msat"]),
            single_use=bool(data["single_use"]),
            created_at=int(data["created_at"]),
            valid_until=_opt_int(data["valid_until"]),
            revoked_at=_opt_int(data["revoked_at"]),
            used_at=_opt_int(data["used_at"]),
            settled_at=_opt_int(data["paid_at"]),
            amt_paid_msat=_opt_int(data["amt_paid_msat"]),
            imported=bool(data["imported"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"not a token: {exc}") from None


def report_to_json(row: ReportRow) -> dict[str, Any]:
    return {
        "day": row.day,
        "route": row.route,
        "settled_invoices": row.settled_invoices,
        "revenue_msat": row.revenue_msat,
        "paid_requests": row.paid_requests,
    }


def report_from_json(data: Any) -> ReportRow:
    try:
        return ReportRow(
            day=str(data["day"]),
            route=str(data["route"]),
            settled_invoices=int(data["settled_invoices"]),
            revenue_msat=int(data["revenue_msat"]),
            paid_requests=int(data["paid_requests"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"not a report row: {exc}") from None


def route_to_json(route: Route) -> dict[str, Any]:
    """A route as configured, without upstream header values (they may be API keys)."""
    return {
        "name": route.name,
        "service": route.service,
        "host": route.host.pattern if route.host is not None else None,
        "path": route.path.pattern,
        "methods": sorted(route.methods) if route.methods is not None else None,
        "upstream": route.upstream,
        "price_msat": route.price_msat,
        "token_mode": route.token_mode.value,
        "token_validity_seconds": route.token_validity_seconds,
        "capabilities": list(route.capabilities),
        "required_capability": route.required_capability,
        "upstream_header_names": [name for name, _ in route.upstream_headers],
    }


def parse_id(text: Any) -> bytes:
    """A token id or payment hash: exactly 64 hex characters."""
    if not isinstance(text, str) or len(text) != 64:
        raise WireError("expected 64 hex characters (a token id or payment hash)")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise WireError("expected 64 hex characters (a token id or payment hash)") from None


@dataclass(frozen=True)
class Cursor:
    """Where a token listing continues: the (created_at, token_id) of the last row seen."""

    created_at: int
    token_id: bytes

    def encode(self) -> str:
        return f"{self.created_at}-{self.token_id.hex()}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        created, sep, token = text.partition("-")
        if not sep or not created.isdigit() or len(created) > 12:
            raise WireError("bad cursor")
        return cls(int(created), parse_id(token))

    @classmethod
    def after(cls, info: TokenInfo) -> Cursor:
        return cls(info.created_at, info.token_id)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
