"""Revocations made in Aperture after an import: found on a re-import, applied on request.

Aperture v0.5.0 revokes a token by DELETING its `secrets` row (admin API
`RevokeToken`, which also deletes the token's `l402_transactions` row); no
tombstone is kept. So a key this store imported earlier from that database,
still valid here, whose key id is no longer among Aperture's `secrets`, was
revoked there (or its row deleted by hand: the same intent). Each one is
reported; with `--sync-revocations` it is revoked here too (its root key
deleted, the row kept for the books).

Only keys imported under the same source name are compared
(`--source-name`, default `aperture`), so keys imported from a second
Aperture database under another name are never taken for revoked. And when
none of the keys imported before this run (at least MIN_EARLIER_FOR_GUARD of
them) is in the database read, it is most likely another database than the
one imported before: nothing is revoked, and the run says so.

Memory stays bounded by a page of our keys at a time, plus the revoked ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.aperture.keystore import ApertureSource
from gateway.store.types import ImportedKeyRef, StoreError

if TYPE_CHECKING:
    from gateway.aperture.importer import ImportReport, ImportTarget, Say
    from gateway.aperture.options import ImportOptions

PAGE_KEYS = 1000
REVOKE_BATCH = 1000
# A database holding none of at least this many keys imported before from "it" is taken
# for another database (every one of them revoked in Aperture is not plausible); below
# it, each missing key is listed and handled like any other.
MIN_EARLIER_FOR_GUARD = 10


async def sync_revocations(
    source: ApertureSource,
    target: ImportTarget,
    report: ImportReport,
    options: ImportOptions,
    say: Say,
) -> None:
    """Report (and with `options.sync_revocations` revoke) keys Aperture no longer has."""
    from gateway.aperture.importer import ImportFailed

    try:
        checked, missing = await _missing(source, target, options.source_name)
    except StoreError as exc:
        raise ImportFailed(report, f"store error: {exc}") from None
    report.revoked_in_aperture = len(missing)
    if not missing:
        return
    # Keys imported in this run are live and present by construction.
    earlier = checked - report.imported
    if earlier >= MIN_EARLIER_FOR_GUARD and checked - len(missing) - report.imported <= 0:
        report.revocations_refused = True
        say(
            f"warning: none of the {len(missing)} key(s) imported earlier under source "
            f"{options.source_name!r} is in this database: is --from the database imported "
            "before? Nothing revoked (give each Aperture database its own --source-name)"
        )
        return
    for ref in missing:
        token = ref.token_id.hex() if ref.token_id is not None else "unknown"
        action = "revoking it here" if options.sync_revocations else "still valid here"
        say(f"revoked in Aperture: token {token} (key id {ref.key_id.hex()}): {action}")
    if not options.sync_revocations:
        say(
            f"{len(missing)} token(s) revoked in Aperture since they were imported still verify "
            "here: re-run with --sync-revocations to revoke them here too"
        )
        return
    try:
        for start in range(0, len(missing), REVOKE_BATCH):
            batch = [ref.key_id for ref in missing[start : start + REVOKE_BATCH]]
            report.revoked_here_now += await target.revoke_imported_keys(batch)
    except StoreError as exc:
        raise ImportFailed(report, f"store error: {exc}") from None


async def _missing(
    source: ApertureSource, target: ImportTarget, source_name: str
) -> tuple[int, list[ImportedKeyRef]]:
    """(live imported keys checked, those of them Aperture no longer has)."""
    checked = 0
    missing: list[ImportedKeyRef] = []
    after: bytes | None = None
    while refs := await target.live_imported_keys(source_name, after=after, limit=PAGE_KEYS):
        after = refs[-1].key_id
        checked += len(refs)
        present = await source.present([ref.key_id for ref in refs])
        missing += [ref for ref in refs if ref.key_id not in present]
    return checked, missing
