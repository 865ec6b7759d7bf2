"""Pruning operations: unpaid rows whose invoice LND canceled (see gateway.jobs.pruning).

Only rows of `l402_tokens` are ever candidates: imported keys were paid for
under Aperture and are never pruned.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.dialect import Dialect
from gateway.store.steps import Execute, FetchAll, Steps, chunks, placeholders, reads, transaction
from gateway.store.types import PruneCandidate

IN_LIST_MAX = 500

# Rows `delete_tokens` may remove: never used, never leased (a lease means a valid
# preimage was shown), and no settlement booked for the payment hash. Evaluated
# again at delete time, so a settlement or a use recorded meanwhile wins.
PRUNABLE = (
    "used_at IS NULL AND lease_until IS NULL AND NOT EXISTS"
    " (SELECT 1 FROM l402_settlements s WHERE s.payment_hash = l402_tokens.payment_hash)"
)


@reads
def prune_candidates(
    created_before: int, limit: int, after: tuple[int, bytes] | None
) -> Steps[list[PruneCandidate]]:
    """Oldest first by (created_at, key_id); `after` continues a scan past kept rows.

    `created_at >= cursor` is redundant with the row comparison but lets both
    databases bound the created_at index range instead of filtering.
    """
    sql = "SELECT key_id, payment_hash, created_at FROM l402_tokens WHERE created_at < ?"
    sql += f" AND {PRUNABLE}"
    params: list[object] = [created_before]
    if after is not None:
        sql += " AND created_at >= ? AND (created_at, key_id) > (?, ?)"
        params += [after[0], after[0], after[1]]
    sql += " ORDER BY created_at, key_id LIMIT ?"
    rows = yield FetchAll(sql, (*params, limit))
    return [PruneCandidate(bytes(k), bytes(h), int(c)) for k, h, c in rows]


@transaction
def delete_tokens(key_ids: Sequence[bytes], dialect: Dialect) -> Steps[int]:
    """Delete those still prunable, all in one transaction that holds off settlements.

    SQLite: the transaction holds the database write lock from its start, so no
    settlement can be booked between the re-check and the delete. PostgreSQL:
    a SHARE lock on l402_settlements does the same (see the dialect).
    """
    if dialect.settlements_share_lock is not None:
        yield Execute(dialect.settlements_share_lock)
    deleted = 0
    for part in chunks(list(key_ids), IN_LIST_MAX):
        keys = placeholders(len(part))  # only placeholders are interpolated
        sql = f"DELETE FROM l402_tokens WHERE key_id IN {keys} AND {PRUNABLE}"  # noqa: S608
        deleted += yield Execute(sql, tuple(part))
    return deleted
