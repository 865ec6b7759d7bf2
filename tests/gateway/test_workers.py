"""`l402-gateway serve --workers 2` as operators run it: one supervisor, two workers.

Each request below opens its own connection, so the kernel spreads them over
both workers' SO_REUSEPORT sockets.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.rehearsal.stack import (
    PER_REQUEST_PATH,
    PER_REQUEST_ROUTE,
    ROUTE_A_PATH,
    WORKERS,
    SellerStack,
)
from tests.gateway.harness import Bought, buy_with, poll

pytestmark = pytest.mark.regtest


@pytest.fixture
def stack(regtest: Descriptor, tmp_path: Path) -> Iterator[SellerStack]:
    seller = SellerStack.start(regtest, tmp_path / "seller")
    try:
        yield seller
    finally:
        seller.stop()


@pytest.fixture
async def fresh() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that opens a new connection per request (no keep-alive reuse)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        yield session


def _workers(stack: SellerStack) -> list[int]:
    supervisor = next(p for p in stack.processes if p.name == "gateway").pid
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children]


async def _metric(stack: SellerStack, name: str) -> float:
    return (await asyncio.to_thread(stack.metrics)).get(name, 0.0)


async def test_two_workers_serve_and_sum_their_metrics(
    stack: SellerStack, fresh: aiohttp.ClientSession, buyer_admin: LndClient
) -> None:
    assert len(_workers(stack)) == WORKERS
    bought = await buy_with(buyer_admin, fresh, stack.public_url + ROUTE_A_PATH)
    statuses = []
    for _ in range(40):
        async with fresh.get(stack.public_url + ROUTE_A_PATH, headers=bought.auth) as r:
            statuses.append(r.status)
    assert statuses == [200] * 40
    name = 'l402_paid_requests_total{route="ep212-premium-signal"}'
    assert await _metric(stack, name) == 40  # both workers' counts, summed by the supervisor
    revenue = 'l402_revenue_msats_total{route="ep212-premium-signal"}'

    async def booked_once() -> bool:
        return await _metric(stack, revenue) == 10_000

    await poll("the settlement booked by the one leader", booked_once, timeout=30)


async def test_fifty_way_single_use_race_across_workers(
    stack: SellerStack, fresh: aiohttp.ClientSession, buyer_admin: LndClient
) -> None:
    url = stack.public_url + PER_REQUEST_PATH
    body = {"input": [{"role": "user", "content": "race"}]}
    bought: Bought = await buy_with(buyer_admin, fresh, url, "POST", json=body)

    async def use() -> int:
        async with fresh.post(url, json=body, headers=bought.auth) as r:
            await r.read()
            return r.status

    statuses = await asyncio.gather(*(use() for _ in range(50)))
    assert statuses.count(200) == 1, statuses
    # The losers are refused: 409 while the winner holds the lease, 402 (a fresh
    # challenge) once it is consumed, and 429 when those fresh challenges pass this
    # client's challenge allowance (burst 20, shared by both workers). How many get
    # which depends on timing; none of them is served.
    assert set(statuses) <= {200, 402, 409, 429}, statuses
    consumed = f'l402_tokens_consumed_total{{route="{PER_REQUEST_ROUTE}"}}'
    assert await _metric(stack, consumed) == 1


async def test_reload_reaches_every_worker_and_a_dead_worker_is_replaced(
    stack: SellerStack, fresh: aiohttp.ClientSession
) -> None:
    url = stack.public_url + ROUTE_A_PATH
    original = stack.config_path.read_text()
    stack.config_path.write_text(original.replace("price_sats: 10\n", "price_sats: 12\n"))
    supervisor = next(p for p in stack.processes if p.name == "gateway")
    supervisor.popen.send_signal(signal.SIGHUP)

    async def reloaded_everywhere() -> bool:
        return await _metric(stack, 'l402_config_reloads_total{result="ok"}') == WORKERS

    await poll("both workers to reload", reloaded_everywhere, timeout=30)
    # One client's challenges share one allowance across the workers (burst 20, the
    # production default): 10 here and 8 below stay inside it.
    prices = set()
    for _ in range(10):
        async with fresh.get(url) as r:
            prices.add((await r.json())["price_msats"])
    assert prices == {12_000}

    victim = _workers(stack)[0]
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        workers = _workers(stack)
        async with fresh.get(stack.admin_url + "/readyz") as r:
            ready = r.status == 200
        return victim not in workers and len(workers) == WORKERS and ready

    await poll("the supervisor to replace the killed worker", replaced, timeout=30)
    for _ in range(8):
        async with fresh.get(url) as r:
            assert r.status == 402


async def test_any_worker_answers_for_all_and_a_revocation_reaches_every_worker(
    stack: SellerStack, fresh: aiohttp.ClientSession, buyer_admin: LndClient
) -> None:
    """The admin listener is served by every worker (SO_REUSEPORT): each /readyz knows
    whether every worker listens, and a revocation through whichever worker answers
    makes every worker refuse the token at once (each had it cached)."""
    url = stack.public_url + ROUTE_A_PATH
    bought = await buy_with(buyer_admin, fresh, url)
    for _ in range(20):  # a new connection each: both workers verify and cache it
        async with fresh.get(url, headers=bought.auth) as r:
            assert r.status == 200
    for _ in range(10):
        async with fresh.get(stack.admin_url + "/readyz") as r:
            body = await r.json()
        assert r.status == 200, body
        assert body["checks"]["workers"] == "ok"
    assert stack.admin_token_file is not None
    secret = stack.admin_token_file.read_text().strip()
    token_id = _token_id(bought.macaroon)
    async with fresh.post(
        f"{stack.admin_url}/admin/tokens/{token_id}/revoke",
        headers={"Authorization": f"Bearer {secret}"},
    ) as r:
        assert r.status == 200, await r.text()

    async def refused_everywhere() -> bool:
        statuses = []
        for _ in range(10):
            async with fresh.get(url, headers=bought.auth) as r:
                statuses.append(r.status)
        assert 200 in statuses or set(statuses) <= {401, 402, 403}, statuses
        return 200 not in statuses

    await poll("every worker to refuse the revoked token", refused_everywhere, timeout=10)


def _token_id(macaroon: str) -> str:
    return Identifier.decode(macaroons.decode(macaroon).identifier).token_id.hex()


def test_the_supervisor_loads_nothing_of_the_request_path(stack: SellerStack) -> None:
    supervisor = next(p for p in stack.processes if p.name == "gateway").pid
    mapped = Path(f"/proc/{supervisor}/maps").read_text()
    assert "aiohttp" not in mapped  # aiohttp's C parser and writer, loaded with aiohttp
    assert "_asyncio" not in mapped
    worker = _workers(stack)[0]
    assert "aiohttp" in Path(f"/proc/{worker}/maps").read_text()  # the check can fail
