"""Fixtures: the shop (tests/embed/shop.py) as FastAPI-under-uvicorn and as aiohttp.

In-process flavour: real servers, sockets, middleware, store (SQLite in
memory) and metrics; only LND's invoice role is the named fake
`MemoryInvoiceSource` (tests/embed/test_embed_regtest.py pays on real LND).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from gateway.embed import L402, LndSettings
from gateway.lightning.backend import Backend
from gateway.store import open_store
from tests.embed.shop import (
    METRICS_PATH,
    ROUTES,
    Seen,
    Served,
    aiohttp_app,
    fastapi_app,
    serve_aiohttp,
    serve_uvicorn,
)
from tests.gateway.harness import metric
from tests.support.clock import FakeClock
from tests.support.invoices import MemoryInvoiceSource

OPTIONS: dict[str, Any] = {"challenge_rate_limit": {"per_minute": 0}}


def dummy_lnd(tmp_path: Path) -> LndSettings:
    """Settings whose files exist but are never read: the tests inject the LND role."""
    for name in ("tls.cert", "invoice.macaroon"):
        (tmp_path / name).write_bytes(b"")
    return LndSettings("127.0.0.1:1", tmp_path / "tls.cert", tmp_path / "invoice.macaroon")


@dataclass
class Shop:
    kind: str
    served: Served
    seller: L402
    seen: Seen
    invoices: MemoryInvoiceSource
    clock: FakeClock
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return self.served.url(path)

    async def challenge(self, path: str, method: str = "GET") -> dict[str, Any]:
        async with self.session.request(method, self.url(path)) as r:
            assert r.status == 402, (r.status, await r.text())
            body: dict[str, Any] = await r.json()
            return body

    async def buy(self, path: str, method: str = "GET") -> dict[str, str]:
        """A challenge, paid by looking up the fake invoice's preimage: the auth headers."""
        body = await self.challenge(path, method)
        preimage = self.invoices.preimage_for(bytes.fromhex(body["payment_hash"]))
        assert hashlib.sha256(preimage).hexdigest() == body["payment_hash"]
        return {"Authorization": f"L402 {body['macaroon']}:{preimage.hex()}"}

    @property
    def port(self) -> int:
        return int(self.served.base.rsplit(":", 1)[1])

    async def send_raw_get(self, path: str, auth: dict[str, str]) -> asyncio.StreamWriter:
        """A GET on a connection of its own, which the test may close to leave mid-request."""
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"GET {path} HTTP/1.1\r\nHost: shop\r\nAuthorization: {auth['Authorization']}"
        writer.write(f"{head}\r\n\r\n".encode())
        await writer.drain()
        return writer

    async def answers(self, route: str, status_class: str) -> float:
        """l402_upstream_requests_total: the app's answers (the embedded "upstream")."""
        labels = {"route": route, "status_class": status_class}
        return await self.metric("l402_upstream_requests_total", **labels)

    async def metric(self, name: str, **labels: str) -> float:
        async with self.session.get(self.url(METRICS_PATH[self.kind])) as r:
            assert r.status == 200
            return metric(await r.text(), name, **labels)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def open_shop(
    kind: str,
    tmp_path: Path,
    session: aiohttp.ClientSession,
    stack: AsyncExitStack,
    **serving: Any,
) -> Shop:
    invoices = MemoryInvoiceSource()
    store = await open_store("sqlite::memory:")
    stack.push_async_callback(store.close)
    clock = FakeClock()
    seller = L402.from_routes(
        ROUTES,
        lnd=dummy_lnd(tmp_path),
        store_url="sqlite::memory:",
        options={**OPTIONS, "store": {"prune_after_days": 0}},
        lightning=cast(Backend, invoices),
        store=store,
        clock=clock,
        follow_settlements=False,  # the fake has no SubscribeInvoices; the regtest suite does
    )
    seen = Seen()
    if kind == "fastapi":
        served = await stack.enter_async_context(
            serve_uvicorn(fastapi_app(seller, seen), **serving)
        )
    else:
        served = await stack.enter_async_context(
            serve_aiohttp(aiohttp_app(seller, seen), **serving)
        )
    stack.callback(seen.let_go)  # runs first: held handlers end before the servers stop
    return Shop(kind, served, seller, seen, invoices, clock, session)


@pytest.fixture(params=["fastapi", "aiohttp"])
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[Shop]:
    async with AsyncExitStack() as stack:
        yield await open_shop(request.param, tmp_path, session, stack)
