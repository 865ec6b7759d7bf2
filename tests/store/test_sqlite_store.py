"""SQLite-specific guarantees: file permissions, WAL, schema versioning, real processes."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from gateway.store import ReserveResult, StoreError, open_store
from gateway.store.schema import SCHEMA_VERSION
from gateway.store.sqlstore import SqlStore

from .factories import make_record

RESERVE_SCRIPT = """
import asyncio, sys
from gateway.store import open_store

async def main() -> None:
    store = await open_store(sys.argv[1])
    reservation = await store.reserve(bytes.fromhex(sys.argv[2]), 500, 30)
    await store.close()
    print(reservation.result.value)

asyncio.run(main())
"""


async def test_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tokens.db"  # the parent is created too
    store = await open_store(f"sqlite://{path}")
    await store.put_token(make_record())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = path.with_name("tokens.db-wal")
    assert wal.exists()
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = conn.execute("SELECT version FROM l402_schema_version").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


async def test_relative_url_resolves_against_base_dir(tmp_path: Path) -> None:
    store = await open_store("sqlite:data/tokens.db", base_dir=tmp_path)
    await store.close()
    assert (tmp_path / "data" / "tokens.db").is_file()
    plain = await open_store("plain.db", base_dir=tmp_path)
    await plain.close()
    assert (tmp_path / "plain.db").is_file()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    await (await open_store(str(path))).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO l402_schema_version VALUES (99)")
    with pytest.raises(StoreError, match="newer"):
        await open_store(str(path))


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        await open_store(str(tmp_path / "dir.db"))


async def test_memory_store_works() -> None:
    store = await open_store("sqlite::memory:")
    assert isinstance(store, SqlStore)
    assert store.dialect.name == "sqlite"
    record = make_record()
    await store.put_token(record)
    assert await store.get_root_key(record.key_id) == record.root_key
    await store.close()


async def test_real_processes_race_for_one_token(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'tokens.db'}"
    store = await open_store(url)
    record = make_record(single_use=True)
    await store.put_token(record)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RESERVE_SCRIPT,
            url,
            record.key_id.hex(),
            stdout=PIPE,
        )
        for _ in range(4)
    ]
    mine = (await store.reserve(record.key_id, 500, 30)).result
    outputs = [(await p.communicate())[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    results = [mine.value, *outputs]
    assert results.count(ReserveResult.RESERVED.value) == 1
    assert results.count(ReserveResult.IN_USE.value) == 4
    await store.close()
