"""Import Aperture's root keys into our store, idempotently, refusing nothing silently.

Each key goes through the store's `KeyImporter` role. Outcomes per row:
imported, already present (same key: re-running is harmless), conflict (a
different key under the same key id: never overwritten), or skipped with a
reason (a row that cannot be a root key). A store failure stops the run; the
keys imported so far stay imported and a re-run continues where it stopped.
"""

from __future__ import annotations

import hmac
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from gateway.aperture.keystore import KEY_BYTES, SecretRow, Snapshot, expected_key_id
from gateway.store.roles import KeyImporter, RootKeys
from gateway.store.types import ImportedKey, StoreError

SOURCE = "aperture"


class ImportTarget(KeyImporter, RootKeys, Protocol):
    """The store roles an import needs: import keys, and read one back to name a conflict."""


class ImportFailed(Exception):
    """The store failed mid-run; `report` holds what was done before."""

    def __init__(self, report: ImportReport, message: str) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    already_present: int = 0
    conflicts: list[str] = field(default_factory=list)  # key ids (hex)
    skipped: list[str] = field(default_factory=list)  # "row N: reason"
    warnings: list[str] = field(default_factory=list)
    by_state: Counter[str] = field(default_factory=Counter)
    unknown_services: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        """Every row is now in our store with the key Aperture had."""
        return not self.conflicts and not self.skipped


def skip_reason(row: SecretRow) -> str | None:
    if len(row.key_id) != KEY_BYTES:
        return f"hash is {len(row.key_id)} bytes, expected {KEY_BYTES}"
    if len(row.root_key) != KEY_BYTES:
        return f"secret is {len(row.root_key)} bytes, expected {KEY_BYTES}"
    return None


def to_imported(row: SecretRow, now: int, report: ImportReport) -> ImportedKey:
    """The store's value for a valid row; drops transaction details that contradict the key."""
    token_id, payment_hash = row.token_id, row.payment_hash
    if token_id is not None and payment_hash is not None:
        if (
            len(token_id) != KEY_BYTES
            or len(payment_hash) != KEY_BYTES
            or expected_key_id(payment_hash, token_id) != row.key_id
        ):
            report.warnings.append(
                f"row {row.row_id}: its l402_transactions record does not match the key id; "
                "imported without token id and payment hash"
            )
            token_id = payment_hash = None
    elif token_id is not None or payment_hash is not None:
        token_id = payment_hash = None
    created_at = row.created_at
    if created_at is None:
        report.warnings.append(f"row {row.row_id}: unreadable created_at; using the import time")
        created_at = now
    return ImportedKey(
        key_id=row.key_id,
        root_key=row.root_key,
        created_at=created_at,
        source=SOURCE,
        token_id=token_id,
        payment_hash=payment_hash,
        service=row.service if token_id is not None else None,
    )


def check_snapshot(
    snapshot: Snapshot, route_names: Collection[str], *, clock: Callable[[], float] = time.time
) -> tuple[ImportReport, list[ImportedKey]]:
    """Validate every row (no store needed): the report so far and the keys to import."""
    report = ImportReport(read=len(snapshot.secrets))
    now = int(clock())
    keys: list[ImportedKey] = []
    for row in snapshot.secrets:
        reason = skip_reason(row)
        if reason is not None:
            report.skipped.append(f"row {row.row_id}: {reason}")
            continue
        key = to_imported(row, now, report)
        report.by_state[row.state or "unrecorded"] += 1
        if key.service is not None and key.service not in route_names:
            report.unknown_services[key.service] += 1
        keys.append(key)
    return report, keys


async def import_snapshot(
    snapshot: Snapshot,
    target: ImportTarget,
    route_names: Collection[str],
    *,
    clock: Callable[[], float] = time.time,
) -> ImportReport:
    report, keys = check_snapshot(snapshot, route_names, clock=clock)
    for key in keys:
        try:
            if await target.import_root_key(key):
                report.imported += 1
            else:
                report.already_present += 1
        except StoreError as exc:
            if await _is_conflict(target, key):
                report.conflicts.append(key.key_id.hex())
                continue
            raise ImportFailed(report, f"store error: {exc}") from None
    return report


async def _is_conflict(target: ImportTarget, key: ImportedKey) -> bool:
    """True when our store holds a different root key for this key id (not a failure)."""
    try:
        stored = await target.get_root_key(key.key_id)
    except StoreError:
        return False
    return stored is not None and not hmac.compare_digest(stored, key.root_key)
