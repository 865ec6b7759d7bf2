"""Token operations: mint, root-key lookup, single-use leases, revocation.

Imported keys are written by `gateway.store.imports`.

Root keys are secrets: none of these ops puts one in an error message; a
StoreError names the key id at most (sha256 of the public identifier).
"""

from __future__ import annotations

from gateway.l402.records import TokenRecord
from gateway.store.steps import Execute, FetchOne, Steps, reads, transaction, writes
from gateway.store.types import Reservation, ReserveResult


@writes
def put_token(record: TokenRecord) -> Steps[None]:
    yield Execute(
        "INSERT INTO l402_tokens (key_id, token_id, payment_hash, route, root_key,"
        " price_msat, single_use, created_at, valid_until, scheme)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.key_id,
            record.token_id,
            record.payment_hash,
            record.route,
            record.root_key,
            record.price_msat,
            bool(record.single_use),
            record.created_at,
            record.valid_until,
            record.scheme,
        ),
    )


@reads
def get_root_key(key_id: bytes) -> Steps[bytes | None]:
    """Our tokens first, then imported ones, in one round trip (key ids never collide:
    `imports.import_root_keys` refuses a key id minted here)."""
    row = yield FetchOne(
        "SELECT root_key FROM l402_tokens WHERE key_id = ?"
        " UNION ALL SELECT root_key FROM l402_imported_keys WHERE key_id = ?",
        (key_id, key_id),
    )
    return None if row is None or row[0] is None else bytes(row[0])


@writes
def reserve(key_id: bytes, now: int, lease_seconds: int, lease_id: bytes) -> Steps[Reservation]:
    """One conditional UPDATE takes the lease; the SELECT after a miss only explains why,
    so it needs no transaction with the UPDATE."""
    changed = yield Execute(
        "UPDATE l402_tokens SET lease_until = ?, lease_id = ? WHERE key_id = ?"
        " AND root_key IS NOT NULL AND used_at IS NULL"
        " AND (lease_until IS NULL OR lease_until <= ?)",
        (now + lease_seconds, lease_id, key_id, now),
    )
    if changed == 1:
        return Reservation(ReserveResult.RESERVED, lease_id)
    row = yield FetchOne(
        "SELECT root_key IS NOT NULL, used_at FROM l402_tokens WHERE key_id = ?", (key_id,)
    )
    if row is None or not row[0]:
        return Reservation(ReserveResult.UNKNOWN)
    if row[1] is not None:
        return Reservation(ReserveResult.ALREADY_USED)
    return Reservation(ReserveResult.IN_USE)


@writes
def commit(key_id: bytes, lease_id: bytes, now: int) -> Steps[bool]:
    changed = yield Execute(
        "UPDATE l402_tokens SET used_at = ?, lease_until = NULL, lease_id = NULL"
        " WHERE key_id = ? AND lease_id = ? AND used_at IS NULL",
        (now, key_id, lease_id),
    )
    return bool(changed == 1)


@writes
def release(key_id: bytes, lease_id: bytes) -> Steps[bool]:
    changed = yield Execute(
        "UPDATE l402_tokens SET lease_until = NULL, lease_id = NULL"
        " WHERE key_id = ? AND lease_id = ? AND used_at IS NULL",
        (key_id, lease_id),
    )
    return bool(changed == 1)


@transaction
def revoke(token_id: bytes, now: int) -> Steps[bool]:
    """Delete the root key (minted here or imported); the row stays for the books."""
    ours = yield Execute(
        "UPDATE l402_tokens SET root_key = NULL, revoked_at = ?"
        " WHERE token_id = ? AND root_key IS NOT NULL",
        (now, token_id),
    )
    imported = yield Execute(
        "UPDATE l402_imported_keys SET root_key = NULL, revoked_at = ?"
        " WHERE token_id = ? AND root_key IS NOT NULL",
        (now, token_id),
    )
    return bool(ours + imported > 0)


@writes
def check_writable(now: int) -> Steps[None]:
    yield Execute(
        "INSERT INTO l402_store_health (id, checked_at) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        (now,),
    )


def parse_token_id(token_id_hex: str) -> bytes:
    """Operator input for revoke: 64 hex characters (raises ValueError)."""
    raw = bytes.fromhex(token_id_hex.strip())
    if len(raw) != 32:
        raise ValueError("token id must be 32 bytes (64 hex characters)")
    return raw
