"""The embedded middleware end to end on the real regtest Lightning network.

A real FastAPI app under uvicorn and a real aiohttp app each sell the shop's
routes (tests/embed/shop.py) with invoices minted on the seller's LND
(invoice.macaroon only) from settings given in code; the buyer's LND pays.
Nothing is faked: store (SQLite file), LND client, settlement follower,
metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.embed import L402, LndSettings
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
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
from tests.gateway.harness import metric, pay, poll

pytestmark = pytest.mark.regtest


@dataclass
class LiveShop:
    kind: str
    served: Served
    seen: Seen
    payer: LndClient
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return self.served.url(path)

    async def buy(self, path: str, method: str = "GET") -> tuple[dict[str, str], dict[str, Any]]:
        """Challenge, then pay its invoice from the buyer node: (auth headers, challenge)."""
        async with self.session.request(method, self.url(path)) as r:
            assert r.status == 402, (r.status, await r.text())
            challenge: dict[str, Any] = await r.json()
            www = r.headers.getall("WWW-Authenticate")
        assert [w.split(" ", 1)[0] for w in www] == ["LSAT", "L402"]
        assert all(f'invoice="{challenge["invoice"]}"' in w for w in www)
        preimage = await pay(self.payer, challenge["invoice"])
        assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == challenge["payment_hash"]
        return {"Authorization": f"L402 {challenge['macaroon']}:{preimage}"}, challenge

    async def metric(self, name: str, **labels: str) -> float:
        async with self.session.get(self.url(METRICS_PATH[self.kind])) as r:
            assert r.status == 200
            return metric(await r.text(), name, **labels)


@pytest.fixture(params=["fastapi", "aiohttp"])
async def live_shop(
    request: pytest.FixtureRequest,
    regtest: Descriptor,
    buyer_admin: LndClient,
    tmp_path: Path,
) -> AsyncIterator[LiveShop]:
    seller = L402.from_routes(
        ROUTES,
        lnd=LndSettings(
            regtest.seller.rpc, regtest.seller.tls_cert, regtest.seller.invoice_macaroon
        ),
        store_url=f"sqlite://{tmp_path / 'tokens.db'}",
        options={"challenge_rate_limit": {"per_minute": 0}},
    )
    seen = Seen()
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        )
        if request.param == "fastapi":
            served = await stack.enter_async_context(serve_uvicorn(fastapi_app(seller, seen)))
        else:
            served = await stack.enter_async_context(serve_aiohttp(aiohttp_app(seller, seen)))
        yield LiveShop(request.param, served, seen, buyer_admin, session)
    assert not seller.running  # the lifespan / cleanup context closed it


async def test_paid_on_regtest_served_by_the_apps_own_handlers(live_shop: LiveShop) -> None:
    shop = live_shop
    # Free routes and the app's own routes are untouched.
    for path in ("/premium/preview", "/open"):
        async with shop.session.get(shop.url(path)) as r:
            assert r.status == 200
            assert "WWW-Authenticate" not in r.headers

    # Reusable route: 402, pay, then the app's handler answers, again and again.
    auth, challenge = await shop.buy("/premium")
    assert (challenge["route"], challenge["price_msats"]) == ("premium", 10_000)
    assert shop.seen.calls["premium"] == 0
    for _ in range(2):
        async with shop.session.get(shop.url("/premium"), headers=auth) as r:
            assert r.status == 200
            body = await r.json()
        assert body["signal"] == "buy"
        assert body["paid"]["route"] == "premium"
    assert shop.seen.calls["premium"] == 2

    # Per-request route: an app 500 keeps the token, the next answer consumes it.
    once, _ = await shop.buy("/once", "POST")
    async with shop.session.post(shop.url("/once?status=500"), data=b"x", headers=once) as r:
        assert r.status == 500
    async with shop.session.post(shop.url("/once"), data=b"abc", headers=once) as r:
        assert r.status == 200
        assert (await r.json())["size"] == 3
    async with shop.session.post(shop.url("/once"), data=b"abc", headers=once) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "already_used")
    assert shop.seen.calls["once"] == 2

    # The seller's books: what was sold, consumed, answered, and settled on LND.
    assert await shop.metric("l402_challenges_issued_total", route="premium") == 1
    assert await shop.metric("l402_paid_requests_total", route="premium") == 2
    assert await shop.metric("l402_tokens_consumed_total", route="once") == 1
    labels = {"route": "once", "status_class": "5xx"}
    assert await shop.metric("l402_upstream_requests_total", **labels) == 1
    assert await shop.metric("l402_lnd_rpc_latency_seconds_count", method="AddInvoice") == 3
    assert await shop.metric("l402_lnd_up") == 1

    async def revenue_booked() -> bool:
        premium = await shop.metric("l402_revenue_msats_total", route="premium")
        sold_once = await shop.metric("l402_revenue_msats_total", route="once")
        return (premium, sold_once) == (10_000, 42_000)

    await poll("the settlement follower to book both payments", revenue_booked, timeout=30)


@dataclass
class Uvicorn:
    """tests/embed/rootpath_app.py under the real `uvicorn` command, serving at `base`."""

    proc: asyncio.subprocess.Process
    base: str
    session: aiohttp.ClientSession
    stderr: bytes = b""  # once stopped, when piped


@asynccontextmanager
async def uvicorn_app(
    regtest: Descriptor, tmp_path: Path, macaroon: str, *options: str, stderr: int | None = None
) -> AsyncIterator[Uvicorn]:
    """Start it with the seller's LND and `macaroon`, wait until it serves, stop it after
    (a piped stderr is then in `Uvicorn.stderr`)."""
    port = free_port()
    env = {
        **os.environ,
        "L402_TEST_LND_HOST": regtest.seller.rpc,
        "L402_TEST_LND_TLS_CERT": str(regtest.seller.tls_cert),
        "L402_TEST_LND_MACAROON": macaroon,
        "L402_TEST_STORE_URL": f"sqlite://{tmp_path / 'tokens.db'}",
    }
    command = [
        sys.executable, "-m", "uvicorn", "tests.embed.rootpath_app:app", *options,
        "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on", "--log-level", "warning",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=Path(__file__).parents[2], stderr=stderr
    )
    base = f"http://127.0.0.1:{port}"
    app: Uvicorn | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def serving() -> bool:
                assert proc.returncode is None, "uvicorn exited"
                try:
                    async with session.get(base + "/open") as r:
                        return r.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await poll("uvicorn to serve", serving, timeout=60)
            app = Uvicorn(proc, base, session)
            yield app
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
        if err and app is not None:
            app.stderr = err


async def test_uvicorn_root_path_on_regtest(
    regtest: Descriptor, buyer_admin: LndClient, tmp_path: Path
) -> None:
    """`uvicorn ... --root-path /api` (the real command line, its own process): the
    routes are priced as the app's router matches them. Before, uvicorn's prefixed
    path (`/api/premium`) matched no route and the paid handler answered for free."""
    macaroon = str(regtest.seller.invoice_macaroon)
    async with uvicorn_app(regtest, tmp_path, macaroon, "--root-path", "/api") as app:
        base, session = app.base, app.session
        shop = LiveShop("fastapi", Served(base), Seen(), buyer_admin, session)
        async with session.head(base + "/premium") as r:
            assert r.status == 402  # HEAD is priced with GET
        async with session.options(base + "/premium") as r:
            assert (r.status, "GET" in r.headers["Allow"]) == (204, True)
        auth, challenge = await shop.buy("/premium")
        assert challenge["route"] == "premium"
        async with session.get(base + "/premium", headers=auth) as r:
            assert r.status == 200
            body = await r.json()
        assert (body["signal"], body["paid"]["route"]) == ("buy", "premium")
        issued = await shop.metric("l402_challenges_issued_total", route="premium")
        assert issued == 2  # the HEAD's and the GET's; the OPTIONS minted nothing


async def test_an_embedded_warning_under_uvicorn_carries_its_reason(
    regtest: Descriptor, tmp_path: Path
) -> None:
    """uvicorn prints our warnings with its own formatter (message only, no `extra`): the
    reason must be in the message. A readonly macaroon cannot mint: 503, and uvicorn's
    stderr says why, in LND's words."""
    macaroon = str(regtest.seller.readonly_macaroon)
    pipe = asyncio.subprocess.PIPE
    async with (
        uvicorn_app(regtest, tmp_path, macaroon, stderr=pipe) as app,
        app.session.get(app.base + "/premium") as r,
    ):
        assert r.status == 503
    text = app.stderr.decode()
    assert "invoice creation failed for route premium" in text
    assert "permission denied" in text
