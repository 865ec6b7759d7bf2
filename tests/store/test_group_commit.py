"""SQLite group commit: writes queued together share one transaction, and fail alone."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from gateway.store import open_store
from gateway.store.types import StoreError
from tests.store.factories import make_record


async def test_a_burst_of_tokens_is_stored_and_one_bad_write_fails_alone(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    store = await open_store(f"sqlite:///{db}")
    try:
        records = [make_record() for _ in range(60)]
        duplicate = dataclasses.replace(records[7], token_id=b"\x01" * 32)  # same key_id
        results = await asyncio.gather(
            *(store.put_token(r) for r in [*records[:30], duplicate, *records[30:]]),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1
        assert isinstance(failures[0], StoreError)
        for record in records:
            assert await store.get_root_key(record.key_id) == record.root_key
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:  # durable, and exactly the 60 good rows
        assert conn.execute("SELECT count(*) FROM l402_tokens").fetchone() == (60,)


async def test_writes_queued_together_commit_together(tmp_path: Path) -> None:
    """Counting the writer connection's COMMIT statements with SQLite's trace callback."""
    store = await open_store(f"sqlite:///{tmp_path / 'tokens.db'}")
    statements: list[str] = []
    driver = store._driver  # type: ignore[attr-defined]
    conn = driver._get_writer_session().conn
    await asyncio.wrap_future(
        driver._writer.call(lambda: conn.set_trace_callback(statements.append))
    )
    try:
        await asyncio.gather(*(store.put_token(make_record()) for _ in range(40)))
        commits = [s for s in statements if s.strip().upper() == "COMMIT"]
        inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 40
        assert 1 <= len(commits) < 40  # 40 concurrent writes, far fewer fsyncs
    finally:
        await store.close()
