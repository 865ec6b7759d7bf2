"""Import Aperture's root keys into our store: paged, batched, idempotent, nothing silent.

Aperture's `secrets` are read a page at a time (bounded reads, see
gateway.aperture.sourcesql), each row checked (gateway.aperture.rows), and the
page's keys written in ONE store call (`KeyImporter.import_root_keys`, one
transaction): a per-key round trip and commit is what held the import to a
few hundred keys a second.

A bad row (a value Aperture's schema does not allow, or one too large to
read) is one line: table, row, column, reason. `OnError.SKIP` (the default)
goes on without it: such a row could not verify a token in Aperture either,
and the other keys keep their buyers' tokens working; `OnError.STOP` stops
at the first one, before writing anything from it on. Either way the run is
not clean (exit 1). Store outcomes per key: imported, already present
(re-running is harmless), already revoked here (stays revoked), or a
conflict (a different root key under that key id: ours is kept). A store
failure stops the run: the pages imported so far stay, and a re-run
continues.

Every line goes through `say`; text from the database is escaped first
(gateway.aperture.shown).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.aperture import rows
from gateway.aperture.keystore import ApertureSource, Raw
from gateway.aperture.options import ImportOptions, OnError
from gateway.aperture.rows import BadRow, Problem, SecretRow, TransactionRow
from gateway.aperture.shown import shown
from gateway.aperture.sourcesql import SECRETS, SERVICES
from gateway.store.roles import ImportedRevocations, KeyImporter
from gateway.store.types import ImportedKey, ImportOutcome, StoreError

Say = Callable[[str], None]


class ImportTarget(KeyImporter, ImportedRevocations, Protocol):
    """The store roles an import needs."""


class ImportFailed(Exception):
    """The store failed mid-run; `report` holds what was done before."""

    def __init__(self, report: ImportReport, message: str) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ImportReport:
    rows: int = 0  # rows of `secrets` read
    imported: int = 0
    already_present: int = 0
    already_revoked: int = 0  # revoked here earlier: stays revoked
    conflicts: int = 0
    bad_rows: int = 0
    warnings: int = 0
    stopped: bool = False  # --on-error stop met a bad row
    by_state: Counter[str] = field(default_factory=Counter)
    unknown_services: Counter[str] = field(default_factory=Counter)
    revoked_in_aperture: int = 0  # imported earlier, no longer in Aperture's secrets
    revoked_here_now: int = 0
    revocations_refused: bool = False  # the source looks like another database

    @property
    def clean(self) -> bool:
        """Every row read is in our store with Aperture's key, and nothing needs a decision."""
        return not (
            self.conflicts
            or self.bad_rows
            or self.stopped
            or self.revocations_refused
            or self.revoked_in_aperture > self.revoked_here_now
        )


class _Stop(Exception):
    """--on-error stop met a bad row."""


@dataclass
class _Run:
    source: ApertureSource
    target: ImportTarget | None  # None: a dry run
    options: ImportOptions
    say: Say
    now: int
    report: ImportReport = field(default_factory=ImportReport)

    def bad(self, bad: BadRow, consequence: str) -> None:
        self.report.bad_rows += 1
        if self.options.on_error is OnError.STOP:
            self.report.stopped = True
            self.say(f"bad row: {bad}; import stopped (--on-error stop)")
            raise _Stop
        self.say(f"bad row: {bad}; {consequence}")

    def warn(self, line: str) -> None:
        self.report.warnings += 1
        self.say(f"warning: {line}")


async def run_import(
    source: ApertureSource,
    target: ImportTarget | None,
    options: ImportOptions,
    say: Say,
    *,
    clock: Callable[[], float] = time.time,
) -> ImportReport:
    """Import (or with `target=None` only check) every key; raises ImportFailed on a store error."""
    run = _Run(source, target, options, say, int(clock()))
    try:
        await _services(run)
        await _secrets(run)
    except _Stop:
        return run.report
    if target is not None:
        from gateway.aperture.revocations import sync_revocations

        await sync_revocations(run.source, target, run.report, options, say)
    return run.report


async def _services(run: _Run) -> None:
    if "services" not in run.source.tables:
        return
    after: int | None = None
    while page := await run.source.page("services", SERVICES, after, run.options.page_rows):
        after = page[-1][0]
        for key, raw in page:
            label = rows.row_label(key, run.source.row_key, raw["id"])
            try:
                service = rows.service_row(label, raw)
            except Problem as problem:
                run.bad(rows.checked("services", label, problem), "not listed")
                continue
            known = service.name in run.options.route_names
            here = "" if known else " (no route of that name here)"
            run.say(
                f"note: Aperture's database defines service {shown(service.name)} (admin API; "
                f"it overrides aperture.yaml): path {shown(service.path_regexp)}, price "
                f"{service.price}{here}; convert-aperture did not see it"
            )


async def _secrets(run: _Run) -> None:
    has_transactions = "l402_transactions" in run.source.tables
    after: int | None = None
    while page := await run.source.page("secrets", SECRETS, after, run.options.page_rows):
        after = page[-1][0]
        checked = [_check_secret(run, key, raw) for key, raw in page]
        key_ids = [s.key_id for s, _ in checked if isinstance(s, SecretRow)]
        found: dict[bytes, TransactionRow | BadRow] = {}
        if has_transactions and key_ids:
            found = await _transactions(run, key_ids)
        keys: list[tuple[str, ImportedKey]] = []
        try:
            for secret, warning in checked:  # in Aperture's row order
                run.report.rows += 1
                if isinstance(secret, BadRow):
                    run.bad(secret, "row skipped")
                    continue
                if warning is not None:
                    run.warn(f"secrets {secret.row}: {warning}; the import time is used")
                tx = found.get(secret.key_id)
                if isinstance(tx, BadRow):
                    run.bad(tx, "its key is imported without token id, payment hash and service")
                    tx = None
                keys.append((secret.row, _key(run, secret, tx)))
        finally:
            await _write(run, keys)  # after a stop: the rows before the bad one


def _check_secret(run: _Run, key: int, raw: Raw) -> tuple[SecretRow | BadRow, str | None]:
    label = rows.row_label(key, run.source.row_key, raw["id"])
    try:
        return rows.secret_row(label, raw)
    except Problem as problem:
        return rows.checked("secrets", label, problem), None


async def _transactions(run: _Run, key_ids: list[bytes]) -> dict[bytes, TransactionRow | BadRow]:
    """Each key's `l402_transactions` row, or why that row is unusable."""
    out: dict[bytes, TransactionRow | BadRow] = {}
    for key, raw in await run.source.transactions_for(key_ids):
        label = rows.row_label(key, run.source.row_key, raw["id"])
        key_id = raw["identifier_hash"]
        if not isinstance(key_id, bytes):
            continue  # matched by identifier_hash, so it is one of ours
        try:
            out[key_id] = rows.transaction_row(label, raw, key_id)
        except Problem as problem:
            out[key_id] = rows.checked("l402_transactions", label, problem)
    return out


def _key(run: _Run, secret: SecretRow, tx: TransactionRow | None) -> ImportedKey:
    report = run.report
    report.by_state[tx.state if tx is not None else "unrecorded"] += 1
    if tx is not None and tx.service not in run.options.route_names:
        report.unknown_services[tx.service] += 1
    return ImportedKey(
        key_id=secret.key_id,
        root_key=secret.root_key,
        created_at=secret.created_at if secret.created_at is not None else run.now,
        source=run.options.source_name,
        token_id=None if tx is None else tx.token_id,
        payment_hash=None if tx is None else tx.payment_hash,
        service=None if tx is None else tx.service,
        price_msat=None if tx is None else tx.price_sats * 1000,
    )


async def _write(run: _Run, keys: list[tuple[str, ImportedKey]]) -> None:
    if run.target is None or not keys:
        return
    try:
        outcomes = await run.target.import_root_keys([key for _, key in keys])
    except StoreError as exc:
        raise ImportFailed(run.report, f"store error: {exc}") from None
    report = run.report
    for (label, key), outcome in zip(keys, outcomes, strict=True):
        if outcome is ImportOutcome.IMPORTED:
            report.imported += 1
        elif outcome is ImportOutcome.PRESENT:
            report.already_present += 1
        elif outcome is ImportOutcome.REVOKED:
            report.already_revoked += 1
        else:
            report.conflicts += 1
            where = (
                "a token minted by this gateway"
                if outcome is ImportOutcome.CONFLICT_MINTED
                else "an earlier import"
            )
            run.say(
                f"conflict: secrets {label}: key id {key.key_id.hex()}: {where} holds a "
                "different root key (kept ours)"
            )
