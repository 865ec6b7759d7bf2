"""Store fixtures: every behavioural test runs against real SQLite and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway.store import open_store
from gateway.store.roles import Store
from tests.support.postgres import PostgresServer

OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database of each kind (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'tokens.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
async def open_stores(store_url: str) -> AsyncIterator[OpenStore]:
    """Open independent stores on one database, as separate gateway processes would."""
    opened: list[Store] = []

    async def factory() -> Store:
        store = await open_store(store_url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_stores: OpenStore) -> Store:
    return await open_stores()
