"""A gateway that cannot write its store says why in its log, at start-up (issue: a silent
read-only start: /readyz said 503 and no log line said why).

Real PostgreSQL: the database is migrated, then made read-only
(`default_transaction_read_only`), then the gateway starts on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.store import open_store
from tests.server.harness import in_process
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


async def test_read_only_store_is_logged_at_start_and_on_readyz(
    tmp_path: Path, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = postgres_server.create_database()
    url = postgres_server.url(name)
    store = await open_store(url)  # create the schema while the database is writable
    await store.close()
    postgres_server.sql("postgres", f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    caplog.set_level(logging.INFO, logger="gateway.readiness")
    async with in_process(tmp_path, store={"url": url, "prune_after_days": 0}) as gw:
        assert gw.server.first_readiness is not None  # beside serving, not before it
        await gw.server.first_readiness
        startup = [r for r in caplog.records if r.name == "gateway.readiness"]
        assert [r.getMessage() for r in startup] == ["not ready"]
        assert "read-only" in str(startup[0].__dict__["error"])
        async with gw.session.get(gw.admin + "/readyz") as r:
            assert r.status == 503
            assert "read-only" in (await r.json())["checks"]["store"]
    postgres_server.drop_database(name)
