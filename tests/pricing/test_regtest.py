"""A hooked price bought on real LND: the seller's invoice is for the hook's amount, the
buyer node pays it, the paid request goes through, and revenue counts what was paid."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.config import load_config
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.gateway.harness import buy_with, metric, poll, routes_document, write_config
from tests.pricing.harness import PricingService, hooked_route, pricing_service

pytestmark = pytest.mark.regtest

HOOK_PRICE_MSAT = 17_000  # not the fallback (9 sats), not any fixed route's price


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def hook() -> AsyncIterator[PricingService]:
    async with pricing_service() as service:
        service.state.prices["/dyn/report"] = HOOK_PRICE_MSAT
        yield service


async def test_pay_a_hooked_price_on_regtest(
    regtest: Descriptor,
    buyer_admin: LndClient,
    seller_invoices: LndClient,
    upstream: str,
    hook: PricingService,
    tmp_path: Path,
) -> None:
    document = routes_document(regtest, upstream, tmp_path, closed_port=free_port())
    document["routes"].insert(0, hooked_route(upstream, hook.url))
    config = load_config(write_config(tmp_path / "routes.yaml", document))
    server = GatewayServer(config)
    await server.start()
    base = f"http://127.0.0.1:{server.public_port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            bought = await buy_with(buyer_admin, session, base + "/dyn/report")
            assert bought.challenge["price_msats"] == HOOK_PRICE_MSAT
            payment_hash = bytes.fromhex(bought.challenge["payment_hash"])
            invoice = await seller_invoices.lookup_invoice(payment_hash)
            assert invoice.value_msat == HOOK_PRICE_MSAT
            assert invoice.amt_paid_msat == HOOK_PRICE_MSAT
            async with session.get(base + "/dyn/report", headers=bought.auth) as r:
                assert r.status == 200
                assert (await r.json())["path"] == "/dyn/report"
            admin = f"http://127.0.0.1:{server.admin_port}/metrics"

            async def booked() -> bool:
                async with session.get(admin) as r:
                    text = await r.text()
                return metric(text, "l402_revenue_msats_total", route="dyn") == HOOK_PRICE_MSAT

            await poll("the settlement booked at the hook's price", booked)
    finally:
        await server.stop()
    assert [call["path"] for call in hook.state.calls] == ["/dyn/report"]
