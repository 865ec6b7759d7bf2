"""Store fixtures: every behavioural test runs against real SQLite and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.store import open_store
from gateway.store.roles import Store

OpenStore = Callable[[], Awaitable[Store]]


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
