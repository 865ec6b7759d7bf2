"""Databases shaped like Aperture v0.5.0's, on real SQLite files and a real PostgreSQL.

The tables are written here from the facts of Aperture's migrations
(`aperturedb/sqlc/migrations` 000001, 000004, 000005, 000007 of v0.5.0):
`secrets` (hash and secret unique BLOBs), `l402_transactions` (identifier_hash
and token_id unique where not NULL, state 'pending' or 'settled'), `services`
(admin-API services, with `auth_scheme`). For PostgreSQL Aperture rewrites the
same files (BLOB -> BYTEA, INTEGER PRIMARY KEY -> SERIAL PRIMARY KEY,
TIMESTAMP -> TIMESTAMP WITHOUT TIME ZONE), and so does `ApertureDb` here.

The methods are synchronous (PostgreSQL through a short `asyncio.run` of its
own): from an async test, call them with `asyncio.to_thread`.

Rows are written the way Aperture writes them: a minted token is one
`secrets` row plus one `l402_transactions` row (MintL402); a revocation
deletes both (admin RevokeToken). `execute` writes what Aperture never
would, for the bad-row tests: SQLite stores any value in any column.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TABLES = [
    """CREATE TABLE secrets (
        id INTEGER PRIMARY KEY,
        hash BLOB UNIQUE NOT NULL,
        secret BLOB UNIQUE NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
    "CREATE INDEX secrets_hash_idx ON secrets (hash)",
    """CREATE TABLE l402_transactions (
        id INTEGER PRIMARY KEY,
        token_id BLOB,
        payment_hash BLOB NOT NULL,
        identifier_hash BLOB,
        service_name TEXT NOT NULL,
        price_sats BIGINT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        auth_type TEXT NOT NULL DEFAULT 'l402',
        created_at TIMESTAMP NOT NULL,
        settled_at TIMESTAMP
    )""",
    "CREATE INDEX l402_transactions_payment_hash_idx ON l402_transactions (payment_hash)",
    "CREATE UNIQUE INDEX l402_transactions_identifier_hash_idx ON l402_transactions"
    " (identifier_hash) WHERE identifier_hash IS NOT NULL",
    "CREATE UNIQUE INDEX l402_transactions_token_id_idx ON l402_transactions (token_id)"
    " WHERE token_id IS NOT NULL",
    """CREATE TABLE services (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL,
        protocol TEXT NOT NULL DEFAULT 'http',
        host_regexp TEXT NOT NULL DEFAULT '.*',
        path_regexp TEXT NOT NULL DEFAULT '',
        price BIGINT NOT NULL DEFAULT 0,
        auth TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        auth_scheme TEXT NOT NULL DEFAULT 'l402'
    )""",
]
_POSTGRES = {
    "BLOB": "BYTEA",
    "INTEGER PRIMARY KEY": "SERIAL PRIMARY KEY",
    "TIMESTAMP": "TIMESTAMP WITHOUT TIME ZONE",
}
# Go's time.Time as the SQLite driver stores it (what parse_timestamp must read).
SQLITE_TIME = "2026-03-25 10:00:00.123456789+00:00"
T0 = 1774432800  # 2026-03-25 10:00:00 UTC


@dataclass
class Token:
    """One token as Aperture records it: identifier parts, root key, service, state."""

    payment_hash: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    token_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    root_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    service: str = "premium"
    state: str = "settled"
    price_sats: int = 10

    def details(self, at: object) -> tuple[object, ...]:
        return (self.price_sats, self.state, at)

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(b"\x00\x00" + self.payment_hash + self.token_id).digest()


def _postgres(statement: str) -> str:
    for old, new in _POSTGRES.items():
        statement = statement.replace(old, new)
    return statement


def _numbered(sql: str) -> str:
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


class ApertureDb:
    """One database with Aperture's tables: a SQLite file, or a PostgreSQL database."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind  # "sqlite" or "postgres"
        self.target = target  # file path, or the postgresql:// URL

    @classmethod
    def sqlite(cls, path: Path, *, transactions: bool = True) -> ApertureDb:
        db = cls("sqlite", str(path))
        db.create(transactions=transactions)
        return db

    @classmethod
    def postgres(cls, url: str) -> ApertureDb:
        db = cls("postgres", url)
        db.create()
        return db

    @property
    def source(self) -> str:
        """What `import-aperture --from` takes."""
        return f"sqlite:{self.target}" if self.kind == "sqlite" else self.target

    def create(self, *, transactions: bool = True) -> None:
        tables = _TABLES if transactions else _TABLES[:2]
        self.script([t if self.kind == "sqlite" else _postgres(t) for t in tables])

    def script(self, statements: Sequence[str]) -> None:
        self.executemany([(s, ()) for s in statements])

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self.executemany([(sql, params)])

    def executemany(self, statements: Iterable[tuple[str, Sequence[object]]]) -> None:
        """Run statements (`?` placeholders) in one transaction."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                for sql, params in statements:
                    conn.execute(sql, tuple(params))
            conn.close()
            return
        asyncio.run(self._pg_many(list(statements)))

    async def _pg_many(self, statements: list[tuple[str, Sequence[object]]]) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.target)
        try:
            async with conn.transaction():
                for sql, params in statements:
                    await conn.execute(_numbered(sql), *params)
        finally:
            await conn.close()

    def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                row = conn.execute(sql, tuple(params)).fetchone()
            conn.close()
            return row[0]
        return asyncio.run(self._pg_scalar(sql, params))

    async def _pg_scalar(self, sql: str, params: Sequence[object]) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.target)
        try:
            return await conn.fetchval(_numbered(sql), *params)
        finally:
            await conn.close()

    def _time(self) -> object:
        if self.kind == "sqlite":
            return SQLITE_TIME
        return dt.datetime.fromtimestamp(T0, dt.UTC).replace(tzinfo=None)

    def mint(self, tokens: Iterable[Token], *, transactions: bool = True) -> None:
        """Each token as MintL402 records it: its secret, then its transaction."""
        statements: list[tuple[str, Sequence[object]]] = []
        for t in tokens:
            statements.append(
                (
                    "INSERT INTO secrets (hash, secret, created_at) VALUES (?, ?, ?)",
                    (t.key_id, t.root_key, self._time()),
                )
            )
            if transactions:
                statements.append(
                    (
                        "INSERT INTO l402_transactions (token_id, payment_hash, identifier_hash,"
                        " service_name, price_sats, state, created_at) VALUES"
                        " (?, ?, ?, ?, ?, ?, ?)",
                        (t.token_id, t.payment_hash, t.key_id, t.service, *t.details(self._time())),
                    )
                )
        self.executemany(statements)

    def revoke(self, token: Token) -> None:
        """What Aperture's admin RevokeToken does: both rows deleted, no tombstone."""
        self.executemany(
            [
                ("DELETE FROM l402_transactions WHERE token_id = ?", (token.token_id,)),
                ("DELETE FROM secrets WHERE hash = ?", (token.key_id,)),
            ]
        )

    def add_service(self, name: str, path_regexp: str, price: object) -> None:
        self.execute(
            "INSERT INTO services (name, address, path_regexp, price, created_at, updated_at)"
            " VALUES (?, '127.0.0.1:1', ?, ?, ?, ?)",
            (name, path_regexp, price, self._time(), self._time()),
        )

    def row_id(self, token: Token) -> int:
        return int(self.scalar("SELECT id FROM secrets WHERE hash = ?", (token.key_id,)))
