"""Operator views of tokens (admin API, `tokens list/show`): never a root key.

Tokens minted here and keys imported from Aperture are listed together,
newest first. An imported key is listed only when its token id and payment
hash are known (Aperture's `l402_transactions`); its route is Aperture's
service name, it is reusable and its expiry is unknown to the store.
Each table is read on its own index and the two pages merged here, so a long
history costs `limit` rows per table, not a sort of everything.
"""

from __future__ import annotations

from typing import Any

from gateway.store.steps import FetchAll, Row, Steps, reads
from gateway.store.types import TokenInfo

_OURS = (
    "SELECT t.token_id, t.payment_hash, t.route, t.price_msat, t.single_use, t.created_at,"
    " t.valid_until, t.revoked_at, t.used_at, s.settled_at, s.amt_paid_msat"
    " FROM l402_tokens t LEFT JOIN l402_settlements s ON s.payment_hash = t.payment_hash"
)
_IMPORTED = (
    "SELECT t.token_id, t.payment_hash, COALESCE(t.service, ''), COALESCE(t.price_msat, 0),"
    " t.created_at, t.revoked_at, s.settled_at, s.amt_paid_msat"
    " FROM l402_imported_keys t LEFT JOIN l402_settlements s ON s.payment_hash = t.payment_hash"
)
_IMPORTED_KNOWN = "t.token_id IS NOT NULL AND t.payment_hash IS NOT NULL"
_NEWEST_FIRST = " ORDER BY t.created_at DESC, t.token_id DESC LIMIT ?"


def _ours(row: Row) -> TokenInfo:
    token_id, payment_hash, route, price, single_use, created, valid, revoked, used, *paid = row
    return TokenInfo(
        token_id=bytes(token_id),
        payment_hash=bytes(payment_hash),
        route=str(route),
        price_msat=int(price),
        single_use=bool(single_use),
        created_at=int(created),
        valid_until=_opt_int(valid),
        revoked_at=_opt_int(revoked),
        used_at=_opt_int(used),
        settled_at=_opt_int(paid[0]),
        amt_paid_msat=_opt_int(paid[1]),
    )


def _imported(row: Row) -> TokenInfo:
    token_id, payment_hash, service, price, created, revoked, settled, amt = row
    return TokenInfo(
        token_id=bytes(token_id),
        payment_hash=bytes(payment_hash),
        route=str(service),
        price_msat=int(price),
        single_use=False,
        created_at=int(created),
        valid_until=None,
        revoked_at=_opt_int(revoked),
        used_at=None,
        settled_at=_opt_int(settled),
        amt_paid_msat=_opt_int(amt),
        imported=True,
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _page_filter(
    route_column: str, route: str | None, before: tuple[int, bytes] | None
) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if route is not None:
        where.append(f"{route_column} = ?")
        params.append(route)
    if before is not None:
        # `created_at <= ?` is implied by the row comparison but bounds the index range.
        where.append("t.created_at <= ? AND (t.created_at, t.token_id) < (?, ?)")
        params += [before[0], before[0], before[1]]
    return where, params


@reads
def list_tokens(
    route: str | None, limit: int, before: tuple[int, bytes] | None
) -> Steps[list[TokenInfo]]:
    """Newest first by (created_at, token_id); `before` continues after the last row seen."""
    where, params = _page_filter("t.route", route, before)
    sql = _OURS + (f" WHERE {' AND '.join(where)}" if where else "") + _NEWEST_FIRST
    ours = yield FetchAll(sql, (*params, limit))
    where, params = _page_filter("t.service", route, before)
    sql = _IMPORTED + f" WHERE {' AND '.join([_IMPORTED_KNOWN, *where])}" + _NEWEST_FIRST
    imported = yield FetchAll(sql, (*params, limit))
    merged = [_ours(r) for r in ours] + [_imported(r) for r in imported]
    merged.sort(key=lambda info: (info.created_at, info.token_id), reverse=True)
    return merged[:limit]


@reads
def find_token(token_id_or_hash: bytes) -> Steps[TokenInfo | None]:
    """By token id or by payment hash (both 32 bytes; a token id match wins)."""
    params = (token_id_or_hash, token_id_or_hash)
    rows = yield FetchAll(_OURS + " WHERE t.token_id = ? OR t.payment_hash = ?", params)
    found = [_ours(r) for r in rows]
    rows = yield FetchAll(
        _IMPORTED + f" WHERE {_IMPORTED_KNOWN} AND (t.token_id = ? OR t.payment_hash = ?)", params
    )
    found += [_imported(r) for r in rows]
    found.sort(key=lambda info: info.token_id != token_id_or_hash)
    return found[0] if found else None
