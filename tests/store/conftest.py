"""Store fixtures: every behavioural test runs against real SQLite and real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway.store import TokenStore, open_store
from tests.support.postgres import PostgresServer, find_bindir

OpenStore = Callable[[], Awaitable[TokenStore]]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the session; fails (not skips) in CI when missing."""
    if find_bindir() is None:
        message = (
            "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are missing: "
            "run scripts/ensure-system-deps.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with PostgresServer() as server:
        yield server


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
    opened: list[TokenStore] = []

    async def factory() -> TokenStore:
        store = await open_store(store_url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_stores: OpenStore) -> TokenStore:
    return await open_stores()
