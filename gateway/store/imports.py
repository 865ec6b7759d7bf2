"""Keys imported from another gateway (Aperture): batched import, and revocation sync.

Why batched: one transaction per key costs one commit (an fsync on SQLite)
per key, which held `import-aperture` to a few hundred keys a second. Here a
batch of keys is one transaction of a few statements: look up which key ids
this store already holds (minted here, or imported before), insert the new
ones with multi-row INSERTs, and fill in details an earlier import did not
know.

Outcomes per key (`ImportOutcome`): imported; present (the same root key was
there, re-running is harmless); revoked (revoked here: it stays revoked, its
root key is gone so it cannot even be compared); or a conflict (a different
root key is stored under that key id, minted here or imported before: never
overwritten). A race with another importer is settled by `ON CONFLICT DO
NOTHING RETURNING`: a key that another transaction inserted meanwhile is
compared like any key found before.

Root keys are secrets: nothing here puts one in an error message.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from gateway.store.steps import (
    Execute,
    FetchAll,
    Row,
    Steps,
    chunks,
    placeholders,
    reads,
    transaction,
)
from gateway.store.types import ImportedKey, ImportedKeyRef, ImportOutcome

IN_LIST = 500  # key ids per IN list (both databases cap bound parameters)
INSERT_ROWS = 100  # rows per multi-row INSERT: 9 parameters each
MAX_BATCH = 5000  # keys per call

_COLUMNS = (
    "key_id, root_key, token_id, payment_hash, service, price_msat, source, created_at, imported_at"
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_KNOWN = "key_id, root_key, token_id, payment_hash, service, price_msat"


def _select_in(columns: str, table: str, count: int) -> str:
    return f"SELECT {columns} FROM {table} WHERE key_id IN {placeholders(count)}"  # noqa: S608


def _by_key_id(rows: list[Row]) -> dict[bytes, Row]:
    return {bytes(row[0]): row for row in rows}


def _same(stored: Any, root_key: bytes) -> bool:
    return hmac.compare_digest(bytes(stored), root_key)


def _fills_in(row: Row, key: ImportedKey) -> bool:
    """True when `key` knows a detail (token id, payment hash, service, price) the row lacks."""
    _, _, token_id, payment_hash, service, price = row
    return (
        (token_id is None and key.token_id is not None)
        or (payment_hash is None and key.payment_hash is not None)
        or (service is None and key.service is not None)
        or (price is None and key.price_msat is not None)
    )


@transaction
def import_root_keys(keys: Sequence[ImportedKey], now: int) -> Steps[list[ImportOutcome]]:
    """One outcome per key, in order (see module docstring); one transaction for all."""
    first: dict[bytes, ImportedKey] = {}
    for key in keys:
        first.setdefault(key.key_id, key)
    ids = list(first)
    minted: dict[bytes, Row] = {}
    for chunk in chunks(ids, IN_LIST):
        rows = yield FetchAll(_select_in("key_id, root_key", "l402_tokens", len(chunk)), chunk)
        minted.update(_by_key_id(rows))
    earlier: dict[bytes, Row] = {}
    for chunk in chunks([i for i in ids if i not in minted], IN_LIST):
        rows = yield FetchAll(_select_in(_KNOWN, "l402_imported_keys", len(chunk)), chunk)
        earlier.update(_by_key_id(rows))
    fresh = [k for i, k in first.items() if i not in minted and i not in earlier]
    inserted: set[bytes] = set()
    for part in chunks(fresh, INSERT_ROWS):
        params: list[object] = []
        for k in part:
            params += (k.key_id, k.root_key, k.token_id, k.payment_hash, k.service)
            params += (k.price_msat, k.source, k.created_at, now)
        rows = yield FetchAll(
            f"INSERT INTO l402_imported_keys ({_COLUMNS}) VALUES "  # noqa: S608
            + ", ".join([_ROW] * len(part))
            + " ON CONFLICT (key_id) DO NOTHING RETURNING key_id",
            params,
        )
        inserted.update(bytes(row[0]) for row in rows)
    raced = [k.key_id for k in fresh if k.key_id not in inserted]
    for chunk in chunks(raced, IN_LIST):  # inserted by another importer meanwhile
        rows = yield FetchAll(_select_in(_KNOWN, "l402_imported_keys", len(chunk)), chunk)
        earlier.update(_by_key_id(rows))

    decided: dict[bytes, ImportOutcome] = {}
    for key_id, key in first.items():
        if key_id in inserted:
            decided[key_id] = ImportOutcome.IMPORTED
        elif key_id in minted:
            stored = minted[key_id][1]
            if stored is None:
                decided[key_id] = ImportOutcome.REVOKED
            elif _same(stored, key.root_key):
                decided[key_id] = ImportOutcome.PRESENT
            else:
                decided[key_id] = ImportOutcome.CONFLICT_MINTED
        elif key_id in earlier:
            row = earlier[key_id]
            if row[1] is None:
                decided[key_id] = ImportOutcome.REVOKED
            elif not _same(row[1], key.root_key):
                decided[key_id] = ImportOutcome.CONFLICT_IMPORTED
            else:
                decided[key_id] = ImportOutcome.PRESENT
                if _fills_in(row, key):
                    yield Execute(
                        "UPDATE l402_imported_keys SET token_id = COALESCE(token_id, ?),"
                        " payment_hash = COALESCE(payment_hash, ?),"
                        " service = COALESCE(service, ?), price_msat = COALESCE(price_msat, ?)"
                        " WHERE key_id = ?",
                        (key.token_id, key.payment_hash, key.service, key.price_msat, key_id),
                    )
        else:  # deleted between our statements: nothing to compare with
            decided[key_id] = ImportOutcome.REVOKED

    outcomes: list[ImportOutcome] = []
    for key in keys:
        if first[key.key_id] is key:
            outcomes.append(decided[key.key_id])
        elif _same(first[key.key_id].root_key, key.root_key):
            outcomes.append(ImportOutcome.PRESENT)  # the same key twice in one batch
        else:
            outcomes.append(ImportOutcome.CONFLICT_IMPORTED)
    return outcomes


@reads
def live_imported_keys(source: str, after: bytes | None, limit: int) -> Steps[list[ImportedKeyRef]]:
    """Imported keys of `source` not revoked here, by key id; `after` continues a scan."""
    sql = (
        "SELECT key_id, token_id FROM l402_imported_keys WHERE source = ? AND root_key IS NOT NULL"
    )
    params: list[object] = [source]
    if after is not None:
        sql += " AND key_id > ?"
        params.append(after)
    rows = yield FetchAll(sql + " ORDER BY key_id LIMIT ?", (*params, limit))
    return [
        ImportedKeyRef(bytes(row[0]), None if row[1] is None else bytes(row[1])) for row in rows
    ]


@transaction
def revoke_imported_keys(key_ids: Sequence[bytes], now: int) -> Steps[int]:
    """Delete these imported root keys (rows stay for the books); the count revoked now."""
    revoked = 0
    for chunk in chunks(key_ids, IN_LIST):
        revoked += yield Execute(
            "UPDATE l402_imported_keys SET root_key = NULL, revoked_at = ?"  # noqa: S608
            f" WHERE root_key IS NOT NULL AND key_id IN {placeholders(len(chunk))}",
            (now, *chunk),
        )
    return revoked
