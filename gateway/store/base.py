"""The TokenStore contract shared by the SQLite and PostgreSQL adapters.

Root keys are secrets: no adapter logs them, and StoreError messages carry
the database's message only, never bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from gateway.l402.records import TokenRecord
from gateway.store.types import (
    LEASE_ID_BYTES,
    PruneCandidate,
    ReportRow,
    Reservation,
    ReserveResult,
    StoreError,
    new_lease_id,
)

__all__ = [
    "LEASE_ID_BYTES",
    "PruneCandidate",
    "ReportRow",
    "Reservation",
    "ReserveResult",
    "StoreError",
    "new_lease_id",
]

SCHEMA_VERSION = 1

# Rows `delete_tokens` may remove: never used, never leased (a lease means a valid
# preimage was shown), and no settlement booked for the payment hash. Evaluated
# again at delete time, so a settlement or a use recorded meanwhile wins.
PRUNABLE_SQL = (
    "used_at IS NULL AND lease_until IS NULL AND NOT EXISTS"
    " (SELECT 1 FROM l402_settlements s WHERE s.payment_hash = l402_tokens.payment_hash)"
)


def prune_candidates_sql(after: bool, numbered: bool) -> str:
    """The candidate query; parameters in order: created_before, [created_at, key_id], limit.

    `created_at >= cursor` is redundant with the row comparison but lets both
    databases bound the created_at index range instead of filtering.
    """
    sql = "SELECT key_id, payment_hash, created_at FROM l402_tokens WHERE created_at < ?"
    sql += f" AND {PRUNABLE_SQL}"
    if after:
        sql += " AND created_at >= ? AND (created_at, key_id) > (?, ?)"
    sql += " ORDER BY created_at, key_id LIMIT ?"
    if numbered:  # asyncpg: $1, $2, ...
        parts = sql.split("?")
        sql = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
    return sql


class TokenStore(Protocol):
    async def put_token(self, record: TokenRecord) -> None: ...

    async def get_root_key(self, key_id: bytes) -> bytes | None: ...

    async def reserve(self, key_id: bytes, now: int, lease_seconds: int) -> Reservation:
        """Lease an unused single-use token until `now + lease_seconds`, if no live lease holds it.

        A lease that ran out (`lease_until <= now`) is taken over with a new lease id.
        """
        ...

    async def commit(self, key_id: bytes, lease_id: bytes, now: int) -> bool:
        """Mark the token used if `lease_id` is still its current lease (even if expired).

        False: already used, or the lease was released or taken over by another holder.
        """
        ...

    async def release(self, key_id: bytes, lease_id: bytes) -> bool:
        """Drop the lease if `lease_id` is still the current one; False if it was not."""
        ...

    async def is_used(self, key_id: bytes) -> bool: ...

    async def revoke(self, token_id_hex: str) -> bool: ...

    async def route_for_payment_hash(self, payment_hash: bytes) -> str | None: ...

    async def record_settlement(
        self,
        payment_hash: bytes,
        route: str,
        amt_paid_msat: int,
        settle_index: int,
        settled_at: int,
    ) -> bool: ...

    async def last_settle_index(self) -> int: ...

    async def first_token_created_at(self) -> int | None: ...

    async def add_paid_requests(self, route: str, day: str, count: int) -> None: ...

    async def revenue_report(
        self, days: int | None = None, *, now: int | None = None
    ) -> list[ReportRow]: ...

    async def prune_candidates(
        self, created_before: int, limit: int, *, after: tuple[int, bytes] | None = None
    ) -> list[PruneCandidate]:
        """Unsettled, unused rows created before `created_before`, oldest first.

        `after` = (created_at, key_id) of the last row seen continues a scan.
        """
        ...

    async def delete_tokens(self, key_ids: Sequence[bytes]) -> int:
        """Delete those of `key_ids` still prunable, in one transaction; return the count."""
        ...

    async def check_writable(self) -> None: ...

    async def close(self) -> None: ...


def utc_day(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def check_day(day: str) -> str:
    """Reject anything but a real YYYY-MM-DD date (raises ValueError)."""
    try:
        valid = len(day) == 10 and date.fromisoformat(day).isoformat() == day
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
    return day


def first_report_day(days: int | None, now: int | None) -> str:
    """Oldest day included in a report of the last `days` UTC days (today counts)."""
    if days is None:
        return "0000-00-00"
    if days < 1:
        raise ValueError("days must be >= 1")
    today = datetime.fromtimestamp(now if now is not None else _now(), UTC).date()
    return (today - timedelta(days=days - 1)).isoformat()


def merge_report(
    settled: list[tuple[str, str, int, int]], paid: list[tuple[str, str, int]]
) -> list[ReportRow]:
    """Join (day, route, invoices, msat) with (day, route, requests), sorted by day, route."""
    rows: dict[tuple[str, str], list[int]] = {}
    for day, route, invoices, msat in settled:
        rows.setdefault((day, route), [0, 0, 0])[:2] = [int(invoices), int(msat)]
    for day, route, requests in paid:
        rows.setdefault((day, route), [0, 0, 0])[2] = int(requests)
    return [ReportRow(d, r, *v) for (d, r), v in sorted(rows.items())]


def parse_token_id(token_id_hex: str) -> bytes:
    """Operator input for revoke: 64 hex characters (raises ValueError)."""
    raw = bytes.fromhex(token_id_hex.strip())
    if len(raw) != 32:
        raise ValueError("token id must be 32 bytes (64 hex characters)")
    return raw


def _now() -> int:
    return int(datetime.now(UTC).timestamp())
