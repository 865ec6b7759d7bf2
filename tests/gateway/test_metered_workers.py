"""Rate limits and freebies across `l402-gateway serve --workers 2`, on SQLite and PostgreSQL.

Each request opens its own connection, so the kernel spreads them over both
workers' SO_REUSEPORT sockets. Freebies are counted in the store on both
databases, so two workers grant exactly `per_client` between them. Request
rate limits are shared in the store on PostgreSQL (exactly `burst` between
the workers); on SQLite each process keeps its own buckets (docs/metering.md).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.regtest.network import Descriptor
from gateway.regtest.processes import ManagedProcess, free_port
from tests.gateway.harness import Buy, Upstream, metric, poll, routes_document, write_config

pytestmark = pytest.mark.regtest

FREE_PATH = "/ep212/premium-signal"
LIMITED_PATH = "/v1/chat/completions"
FREEBIES = 3
BURST = 5


@pytest.fixture
async def fresh() -> AsyncIterator[aiohttp.ClientSession]:
    """A new connection per request (no keep-alive reuse): both workers take requests."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


class Workers:
    def __init__(self, process: ManagedProcess, public: str, admin: str) -> None:
        self.process = process
        self.public = public
        self.admin = admin

    async def metric(self, session: aiohttp.ClientSession, name: str, **labels: str) -> float:
        async with session.get(self.admin + "/metrics") as r:
            return metric(await r.text(), name, **labels)


@pytest.fixture
async def workers(
    regtest: Descriptor,
    upstream: Upstream,
    tmp_path: Path,
    store_url: str,
    fresh: aiohttp.ClientSession,
) -> AsyncIterator[Workers]:
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    document["store"] = {"url": store_url}
    document["routes"] = [
        {
            "name": "signal",
            "path": f"^{FREE_PATH}$",
            "upstream": upstream.url,
            "price_sats": 4,
            "freebies": {"per_client": FREEBIES, "per": "day"},
        },
        {
            "name": "chat",
            "path": f"^{LIMITED_PATH}$",
            "methods": ["POST"],
            "upstream": upstream.url,
            "bundle": {"units": 1000, "unit": "tokens", "price_sats": 3},
            "rate_limits": [{"requests": 1, "per": "1h", "burst": BURST}],
        },
    ]
    config = write_config(tmp_path / "routes.yaml", document)
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"]
    process = ManagedProcess("gateway", argv, tmp_path / "gateway.log", detached=False)
    running = Workers(
        process, f"http://{document['listen']['public']}", f"http://{document['listen']['admin']}"
    )
    try:

        async def ready() -> bool:
            if not process.alive():
                pytest.fail(f"the gateway exited:\n{process.log_tail()}")
            try:
                async with fresh.get(running.admin + "/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await poll("serve --workers 2 to be ready", ready, timeout=60)
        yield running
    finally:
        process.stop()


async def test_freebies_are_counted_once_across_two_workers(
    workers: Workers, fresh: aiohttp.ClientSession
) -> None:
    async def one() -> int:
        async with fresh.get(workers.public + FREE_PATH) as r:
            await r.read()
            return r.status

    statuses = await asyncio.gather(*(one() for _ in range(12)))
    assert sorted(statuses) == [200] * FREEBIES + [402] * (12 - FREEBIES)
    assert await workers.metric(fresh, "l402_freebies_total", route="signal") == FREEBIES


async def test_rate_limits_per_credential_across_two_workers(
    workers: Workers, fresh: aiohttp.ClientSession, buy: Buy, store_url: str
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    bought = await buy(fresh, workers.public + LIMITED_PATH, "POST", json=body)

    async def one() -> tuple[int, str | None]:
        async with fresh.post(workers.public + LIMITED_PATH, json=body, headers=bought.auth) as r:
            await r.read()
            return r.status, r.headers.get("Retry-After")

    answers = [await one() for _ in range(12)]  # one after another: no reservation races
    served = [a for a in answers if a[0] == 200]
    limited = [a for a in answers if a[0] == 429]
    assert len(served) + len(limited) == 12
    assert all(retry is not None and int(retry) >= 1 for _, retry in limited)
    counted = await workers.metric(fresh, "l402_requests_rate_limited_total", route="chat")
    assert counted == len(limited)
    if store_url.startswith("postgresql"):
        assert len(served) == BURST  # one bucket in the store for both workers
    else:
        assert BURST <= len(served) <= 2 * BURST  # a bucket per worker process
