"""Test doubles and fixture builders for the Aperture importer tests.

`InMemoryKeyStore` is a TEST DOUBLE for the store's `KeyImporter` + `RootKeys`
roles (the real adapters implement them on another branch); it follows the
role's contract: True when new, False when the same key is already there,
StoreError when a different key is stored under the same key id.
`write_aperture_sqlite` builds a database shaped like Aperture's (tables
`secrets` and, optionally, `l402_transactions` and `services`), written from
the schema facts, for unit tests that need rows Aperture would never write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.types import ImportedKey, StoreError


@dataclass
class InMemoryKeyStore:
    """Test double: KeyImporter + RootKeys in a dict (optionally failing on one key id)."""

    keys: dict[bytes, bytes] = field(default_factory=dict)
    imported: list[ImportedKey] = field(default_factory=list)
    fail_on: bytes | None = None  # simulated database failure for this key id

    async def import_root_key(self, key: ImportedKey) -> bool:
        if key.key_id == self.fail_on:
            raise StoreError("simulated database failure")
        stored = self.keys.get(key.key_id)
        if stored is not None:
            if hmac.compare_digest(stored, key.root_key):
                return False
            raise StoreError("a different root key is stored for this key id")
        self.keys[key.key_id] = key.root_key
        self.imported.append(key)
        return True

    async def get_root_key(self, key_id: bytes) -> bytes | None:
        if key_id == self.fail_on:
            raise StoreError("simulated database failure")
        return self.keys.get(key_id)


@dataclass
class Token:
    """One token as Aperture records it: identifier parts, root key, service."""

    payment_hash: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    token_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    root_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    service: str = "premium"
    created_at: str = "2026-03-25 10:00:00.123456789 +0000 UTC"  # Go's time.String()
    state: str = "settled"

    @property
    def identifier(self) -> bytes:
        return b"\x00\x00" + self.payment_hash + self.token_id

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.identifier).digest()


def write_aperture_sqlite(
    path: Path,
    tokens: list[Token],
    *,
    transactions: bool = True,
    services: Sequence[tuple[str, str, int]] = (),
    raw_secrets: Sequence[tuple[bytes, bytes, str]] = (),
) -> None:
    """A SQLite file with Aperture's table shapes and these rows."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE TABLE secrets (id INTEGER PRIMARY KEY, hash BLOB UNIQUE NOT NULL, "
            "secret BLOB UNIQUE NOT NULL, created_at TIMESTAMP NOT NULL)"
        )
        for t in tokens:
            conn.execute(
                "INSERT INTO secrets (hash, secret, created_at) VALUES (?, ?, ?)",
                (t.key_id, t.root_key, t.created_at),
            )
        for key_id, secret, created in raw_secrets:
            conn.execute(
                "INSERT INTO secrets (hash, secret, created_at) VALUES (?, ?, ?)",
                (key_id, secret, created),
            )
        if transactions:
            conn.execute(
                "CREATE TABLE l402_transactions (id INTEGER PRIMARY KEY, token_id BLOB, "
                "payment_hash BLOB NOT NULL, identifier_hash BLOB, service_name TEXT NOT NULL, "
                "price_sats BIGINT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', "
                "auth_type TEXT NOT NULL DEFAULT 'l402', created_at TIMESTAMP NOT NULL, "
                "settled_at TIMESTAMP)"
            )
            for t in tokens:
                conn.execute(
                    "INSERT INTO l402_transactions (token_id, payment_hash, identifier_hash, "
                    "service_name, price_sats, state, created_at) VALUES (?, ?, ?, ?, 10, ?, ?)",
                    (t.token_id, t.payment_hash, t.key_id, t.service, t.state, t.created_at),
                )
        if services:
            conn.execute(
                "CREATE TABLE services (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                "path_regexp TEXT NOT NULL DEFAULT '', price BIGINT NOT NULL DEFAULT 0)"
            )
            conn.executemany(
                "INSERT INTO services (name, path_regexp, price) VALUES (?, ?, ?)", services
            )
        conn.commit()
    finally:
        conn.close()
