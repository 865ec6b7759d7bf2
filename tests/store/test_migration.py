"""Schema v1 -> v2 on real SQLite and real PostgreSQL: a deployed v1 database keeps its data.

The v1 database is built with the frozen v1 DDL (tests/store/v1_schema.py) and
filled with raw SQL, as a v1 gateway left it; then the current code opens it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.store import ReportRow, ReserveResult, StoreError, open_store
from gateway.store.schema import SCHEMA_VERSION
from gateway.store.types import ImportedKey
from tests.support.postgres import PostgresServer

from .factories import make_record
from .sql import fetch
from .v1_schema import POSTGRES_SCHEMA, SQLITE_SCHEMA, V1_VERSION_TABLE

DAY = 1_772_366_400  # 2026-03-01 12:00 UTC
SETTLED = make_record("premium", created_at=DAY - 100)
USED = make_record("textgen", single_use=True, created_at=DAY - 50)
REVOKED = make_record("premium", created_at=DAY - 10)
INSERT_TOKEN = (
    "INSERT INTO l402_tokens (key_id, token_id, payment_hash, route, root_key, price_msat,"
    " single_use, created_at, valid_until, revoked_at, lease_until, lease_id, used_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _v1_rows(boolean: type) -> list[tuple[str, tuple[object, ...]]]:
    """What a v1 gateway wrote: three tokens, one settlement, the settle index, usage."""
    rows: list[tuple[str, tuple[object, ...]]] = []
    for record, revoked_at, used_at in (
        (SETTLED, None, None),
        (USED, None, DAY),
        (REVOKED, DAY, None),
    ):
        root_key = None if revoked_at else record.root_key
        values = (
            record.key_id, record.token_id, record.payment_hash, record.route, root_key,
            record.price_msat, boolean(record.single_use), record.created_at, None,
            revoked_at, None, None, used_at,
        )  # fmt: skip
        rows.append((INSERT_TOKEN, values))
    rows += [
        (
            "INSERT INTO l402_settlements VALUES (?, ?, ?, ?, ?, ?)",
            (SETTLED.payment_hash, "premium", 10_000, 7, DAY, "2026-03-01"),
        ),
        ("INSERT INTO l402_settle_state VALUES (1, ?)", (7,)),
        ("INSERT INTO l402_paid_requests VALUES (?, ?, ?)", ("2026-03-01", "premium", 4)),
        ("INSERT INTO l402_schema_version VALUES (?)", (1,)),
    ]
    return rows


def make_v1_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(V1_VERSION_TABLE)
        conn.executescript(SQLITE_SCHEMA)
        for sql, params in _v1_rows(int):
            conn.execute(sql, params)
    path.chmod(0o600)


async def make_v1_postgres(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(V1_VERSION_TABLE)
        for statement in POSTGRES_SCHEMA:
            await conn.execute(statement)
        for sql, params in _v1_rows(bool):
            numbered = sql
            for i in range(1, sql.count("?") + 1):
                numbered = numbered.replace("?", f"${i}", 1)
            await conn.execute(numbered, *params)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v1_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database exactly as a v1 gateway left it."""
    if request.param == "sqlite":
        make_v1_sqlite(tmp_path / "tokens.db")
        yield f"sqlite://{tmp_path / 'tokens.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        asyncio.run(make_v1_postgres(server.url(name)))
        yield server.url(name)
    finally:
        server.drop_database(name)


async def versions(url: str) -> list[int]:
    return [int(r[0]) for r in await fetch(url, "SELECT version FROM l402_schema_version")]


async def test_v1_database_is_migrated_and_keeps_its_data(v1_url: str) -> None:
    assert await versions(v1_url) == [1]
    store = await open_store(v1_url)
    try:
        assert sorted(await versions(v1_url)) == list(range(1, SCHEMA_VERSION + 1))
        assert await store.get_root_key(SETTLED.key_id) == SETTLED.root_key
        assert await store.get_root_key(REVOKED.key_id) is None
        assert await store.reserve(USED.key_id, DAY + 1, 30) == (ReserveResult.ALREADY_USED, None)
        assert await store.last_settle_index() == 7
        assert await store.revenue_report() == [ReportRow("2026-03-01", "premium", 1, 10_000, 4)]

        listed = {info.token_id: info for info in await store.list_tokens()}
        assert set(listed) == {SETTLED.token_id, USED.token_id, REVOKED.token_id}
        assert (listed[SETTLED.token_id].settled_at, listed[SETTLED.token_id].amt_paid_msat) == (
            DAY,
            10_000,
        )
        assert listed[USED.token_id].used_at == DAY
        assert listed[USED.token_id].single_use is True
        assert listed[REVOKED.token_id].revoked_at == DAY

        # Version 2's tables work on the migrated database.
        imported = ImportedKey(b"\x11" * 32, b"\x22" * 32, DAY, "aperture")
        assert await store.import_root_key(imported) is True
        assert await store.get_root_key(imported.key_id) == imported.root_key
        assert await store.take_token("192.0.2.1", DAY, 60, 2) is None

        # And version 3's.
        credit = await store.credit_units(
            b"\x33" * 32, b"\x44" * 32, 10, unit="tokens", scope="r", now=DAY
        )
        assert credit.credited is True
        assert await store.take_allowance("fb:r:c", 1, 1, expires_at=DAY) == 1
    finally:
        await store.close()

    again = await open_store(v1_url)  # current: nothing more to migrate
    await again.close()
    assert sorted(await versions(v1_url)) == list(range(1, SCHEMA_VERSION + 1))


async def test_two_gateways_migrating_at_once_migrate_once(v1_url: str) -> None:
    stores = await asyncio.gather(open_store(v1_url), open_store(v1_url))
    try:
        assert sorted(await versions(v1_url)) == list(range(1, SCHEMA_VERSION + 1))
        for store in stores:
            assert await store.get_root_key(SETTLED.key_id) == SETTLED.root_key
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused_on_both_databases(v1_url: str) -> None:
    await (await open_store(v1_url)).close()
    if v1_url.startswith("sqlite"):
        with sqlite3.connect(v1_url.removeprefix("sqlite://")) as db:
            db.execute("INSERT INTO l402_schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    else:
        conn = await asyncpg.connect(v1_url)
        try:
            await conn.execute("INSERT INTO l402_schema_version VALUES ($1)", SCHEMA_VERSION + 1)
        finally:
            await conn.close()
    with pytest.raises(StoreError, match=f"v{SCHEMA_VERSION + 1} is newer"):
        await open_store(v1_url)


async def test_a_fresh_sqlite_store_has_the_same_schema_as_a_migrated_one(tmp_path: Path) -> None:
    """Fresh stores take the same path (v1 DDL, then each migration), so they cannot drift."""
    make_v1_sqlite(tmp_path / "old.db")
    for name in ("old.db", "fresh.db"):
        await (await open_store(f"sqlite://{tmp_path / name}")).close()
    query = "SELECT name, sql FROM sqlite_master WHERE name LIKE 'l402%' ORDER BY name"
    migrated = await fetch(f"sqlite://{tmp_path / 'old.db'}", query)
    created = await fetch(f"sqlite://{tmp_path / 'fresh.db'}", query)
    assert [r[0] for r in migrated] == [r[0] for r in created]
    names = {r[0] for r in created}
    assert {"l402_imported_keys", "l402_rate_buckets", "l402_tokens_created_token"} <= names
