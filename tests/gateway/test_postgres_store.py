"""The gateway end to end with its store on a real PostgreSQL (the old deployment's store).

Paid flow, restart persistence, settlement booking and the single-use race across two
gateway instances, all against one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import load_config
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from gateway.store import open_store
from tests.gateway.harness import (
    Buy,
    Upstream,
    metric,
    poll,
    routes_document,
    write_config,
)
from tests.support.clock import FakeClock
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.regtest, pytest.mark.postgres]

PREMIUM = "/ep212/premium-signal"
TEXTGEN = "/api/l402/text-generation"


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


def _config(regtest: Descriptor, upstream: Upstream, tmp_path: Path, pg_url: str, tag: str) -> Path:
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    document["store"] = {"url": pg_url}
    return write_config(tmp_path / f"{tag}.yaml", document)


@pytest.fixture
async def servers(
    regtest: Descriptor, upstream: Upstream, tmp_path: Path, pg_url: str, clock: FakeClock
) -> AsyncIterator[list[GatewayServer]]:
    """Two gateway instances (own listeners, caches, pools) on one PostgreSQL database."""
    started = []
    try:
        for tag in ("a", "b"):
            server = GatewayServer(
                load_config(_config(regtest, upstream, tmp_path, pg_url, tag)), clock=clock
            )
            await server.start()
            started.append(server)
        yield started
    finally:
        for server in reversed(started):
            await server.stop()


def _url(server: GatewayServer, path: str) -> str:
    return f"http://127.0.0.1:{server.public_port}{path}"


async def test_paid_flow_persists_and_books_revenue_in_postgres(
    servers: list[GatewayServer],
    session: aiohttp.ClientSession,
    buy: Buy,
    pg_url: str,
    regtest: Descriptor,
    upstream: Upstream,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    first, second = servers
    bought = await buy(session, _url(first, PREMIUM))
    for server in (first, second):  # minted by one instance, honoured by the other
        async with session.get(_url(server, PREMIUM), headers=bought.auth) as r:
            assert r.status == 200
            assert (await r.json())["source"] == "openagents.ep212"

    async def revenue() -> float:
        # Both instances follow LND; whichever books the settlement first counts it.
        total = 0.0
        for server in (first, second):
            async with session.get(f"http://127.0.0.1:{server.admin_port}/metrics") as r:
                total += metric(await r.text(), "l402_revenue_msats_total", route="premium")
        return total

    async def booked() -> bool:
        return await revenue() >= 10_000

    await poll("revenue booked from LND into PostgreSQL", booked, timeout=30)
    assert await revenue() == 10_000  # once across both instances, never twice
    store = await open_store(pg_url)
    try:
        rows = await store.revenue_report()
    finally:
        await store.close()
    assert [(r.route, r.settled_invoices, r.revenue_msat) for r in rows] == [("premium", 1, 10_000)]

    # A fresh instance on the same database still honours the token.
    await first.stop()
    servers.remove(first)
    again = GatewayServer(
        load_config(_config(regtest, upstream, tmp_path, pg_url, "c")), clock=clock
    )
    await again.start()
    servers.append(again)
    async with session.get(_url(again, PREMIUM), headers=bought.auth) as r:
        assert r.status == 200


async def test_single_use_race_across_two_gateways_on_postgres(
    servers: list[GatewayServer], session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, _url(servers[0], TEXTGEN), "POST")
    start = asyncio.Event()

    async def use(i: int) -> tuple[int, str | None]:
        await start.wait()
        url = _url(servers[i % 2], TEXTGEN)
        async with session.post(url, json={"prompt": f"p{i}"}, headers=bought.auth) as r:
            body = await r.json()
            return r.status, None if r.status == 200 else (body.get("reason") or body.get("error"))

    tasks = [asyncio.create_task(use(i)) for i in range(50)]
    start.set()
    outcomes = Counter(await asyncio.gather(*tasks))
    assert outcomes[(200, None)] == 1, outcomes
    assert set(outcomes) <= {(200, None), (402, "already_used"), (409, "in_use")}, outcomes
