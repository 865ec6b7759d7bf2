"""Root keys imported from Aperture (KeyImporter), on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os

import pytest

from gateway.store import Store, StoreError
from gateway.store.types import ImportedKey, SettledInvoice

from .conftest import OpenStore
from .factories import make_record
from .sql import fetch

T0 = 1_700_000_000


def aperture_key(*, known: bool = True, service: str = "premium") -> ImportedKey:
    """A key as `import-aperture` builds it from Aperture's secrets (+ l402_transactions)."""
    payment_hash, token_id = os.urandom(32), os.urandom(32)
    identifier = b"\x00\x00" + payment_hash + token_id
    return ImportedKey(
        key_id=hashlib.sha256(identifier).digest(),  # Aperture's secrets.hash
        root_key=os.urandom(32),
        created_at=T0,
        source="aperture",
        token_id=token_id if known else None,
        payment_hash=payment_hash if known else None,
        service=service if known else None,
        price_msat=10_000 if known else None,
    )


async def test_an_imported_key_verifies_and_reimporting_is_harmless(store: Store) -> None:
    key = aperture_key()
    assert await store.import_root_key(key) is True
    assert await store.get_root_key(key.key_id) == key.root_key
    assert await store.import_root_key(key) is False  # idempotent
    assert await store.get_root_key(key.key_id) == key.root_key


async def test_a_different_root_key_for_a_known_key_id_is_refused(store: Store) -> None:
    key = aperture_key()
    await store.import_root_key(key)
    forged = dataclasses.replace(key, root_key=os.urandom(32))
    with pytest.raises(StoreError, match="different root key") as info:
        await store.import_root_key(forged)
    for secret in (key.root_key, forged.root_key):
        assert secret.hex() not in str(info.value)
        assert secret.hex() not in repr(forged)
    assert await store.get_root_key(key.key_id) == key.root_key  # never overwritten


async def test_a_key_id_minted_here_is_never_replaced(store: Store) -> None:
    record = make_record()
    await store.put_token(record)
    same = ImportedKey(record.key_id, record.root_key, T0, "aperture")
    assert await store.import_root_key(same) is False
    other = dataclasses.replace(same, root_key=os.urandom(32))
    with pytest.raises(StoreError, match="minted by this gateway"):
        await store.import_root_key(other)
    assert await store.get_root_key(record.key_id) == record.root_key


async def test_revoke_by_token_id_and_a_revoked_key_stays_revoked(store: Store) -> None:
    key = aperture_key()
    await store.import_root_key(key)
    assert key.token_id is not None
    assert await store.revoke(key.token_id.hex()) is True
    assert await store.get_root_key(key.key_id) is None
    assert await store.revoke(key.token_id.hex()) is False
    assert await store.import_root_key(key) is False  # re-running the import does not revive it
    assert await store.get_root_key(key.key_id) is None


async def test_a_revoked_token_of_ours_is_not_revived_by_an_import(store: Store) -> None:
    record = make_record()
    await store.put_token(record)
    assert await store.revoke(record.token_id_hex)
    assert (
        await store.import_root_key(ImportedKey(record.key_id, record.root_key, T0, "x")) is False
    )
    assert await store.get_root_key(record.key_id) is None


async def test_a_reimport_fills_in_what_the_first_did_not_know(
    store: Store, store_url: str
) -> None:
    known = aperture_key()
    bare = dataclasses.replace(known, token_id=None, payment_hash=None, service=None)
    assert await store.import_root_key(bare) is True
    assert known.token_id is not None
    assert await store.revoke(known.token_id.hex()) is False  # token id unknown so far
    assert await store.find_token(known.token_id) is None
    assert await store.import_root_key(known) is False
    info = await store.find_token(known.token_id)
    assert info is not None
    assert (info.route, info.imported, info.price_msat) == ("premium", True, 10_000)
    rows = await fetch(store_url, "SELECT count(*) FROM l402_imported_keys")
    assert rows[0][0] == 1


async def test_imported_keys_are_listed_but_never_pruned(store: Store) -> None:
    key = aperture_key()
    await store.import_root_key(key)
    assert key.payment_hash is not None
    await store.record_settlement(SettledInvoice(key.payment_hash, "premium", 10_000, 3, T0 + 9))
    listed = await store.list_tokens()
    assert [(i.token_id, i.imported, i.settled_at) for i in listed] == [
        (key.token_id, True, T0 + 9)
    ]
    assert await store.prune_candidates(T0 + 10**9, 100) == []


async def test_imports_from_two_processes_race_safely(open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    keys = [aperture_key() for _ in range(20)]
    results = await asyncio.gather(*(s.import_root_key(k) for k in keys for s in (first, second)))
    assert results.count(True) == 20  # each key once, whichever process won
    assert results.count(False) == 20
    for key in keys:
        assert await second.get_root_key(key.key_id) == key.root_key


async def test_malformed_imports_are_value_errors(store: Store) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        await store.import_root_key(ImportedKey(b"\x01" * 31, b"\x02" * 32, T0, "x"))
    with pytest.raises(ValueError, match="32 bytes"):
        await store.import_root_key(ImportedKey(b"\x01" * 32, b"\x02" * 16, T0, "x"))
