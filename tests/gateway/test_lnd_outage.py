"""The seller's LND goes away and comes back while the gateway keeps running."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.regtest.network import RegtestNetwork
from tests.gateway.harness import PRICES_SATS, Buy, Gateway, fetch, metric, poll

pytestmark = pytest.mark.regtest

PREMIUM = "/ep212/premium-signal"


async def test_lnd_down_then_recovers_without_restarting_the_gateway(
    gateway: Gateway,
    session: aiohttp.ClientSession,
    buy: Buy,
    regtest_network: RegtestNetwork,
) -> None:
    bought = await buy(session, gateway.url(PREMIUM))  # not used yet: nothing cached
    status, _, _ = await fetch(session, "GET", gateway.admin + "/readyz")
    assert status == 200

    issued = await gateway.metric("l402_challenges_issued_total", route="premium")
    rows = gateway.token_rows()
    await asyncio.to_thread(regtest_network.stop_node, "seller")
    try:
        async with session.get(gateway.url(PREMIUM)) as r:
            assert r.status == 503
            assert int(r.headers["Retry-After"]) > 0
            assert r.headers.getall("WWW-Authenticate", []) == []
            body = await r.json()
        assert body["error"] == "lightning_unavailable"
        assert body["message"]
        assert gateway.token_rows() == rows  # nothing stored for an invoice that never was
        text = await gateway.metrics()
        assert metric(text, "l402_challenges_issued_total", route="premium") == issued
        assert metric(text, "l402_invoice_failures_total", route="premium") == 1
        assert metric(text, "l402_invoice_failures_total", reason="lnd_unavailable") == 1
        assert metric(text, "l402_lnd_up") == 0

        # A credential bought before the outage still works: verifying needs no LND.
        async with session.get(gateway.url(PREMIUM), headers=bought.auth) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["authorizationHeaders"] == 1

        async with session.get(gateway.admin + "/readyz") as r:
            assert r.status == 503
            readiness = await r.json()
        assert readiness["ready"] is False
        assert readiness["checks"]["lnd"] != "ok"
        assert readiness["checks"]["store"] == "ok"
    finally:
        # Off the event loop, so the in-process gateway keeps serving meanwhile. (Children
        # spawned from worker threads are not armed with PR_SET_PDEATHSIG, which would
        # otherwise kill this LND when the loop's executor thread ends.)
        await asyncio.to_thread(regtest_network.start_node, "seller")

    async def challenge_works() -> bool:
        status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM))
        assert status in (402, 503)
        return status == 402

    await poll("the gateway to mint challenges again", challenge_works, timeout=60)

    async def ready() -> bool:
        status, _, _ = await fetch(session, "GET", gateway.admin + "/readyz")
        return status == 200

    await poll("/readyz to recover", ready, timeout=30)
    assert await gateway.metric("l402_lnd_up") == 1
    # And a fresh purchase goes through end to end, and the settlement follower,
    # whose invoice stream broke with LND, books both payments exactly once.
    again = await buy(session, gateway.url(PREMIUM))
    status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM), headers=again.auth)
    assert status == 200
    price = PRICES_SATS["premium"] * 1000

    async def booked_both() -> bool:
        revenue = await gateway.metric("l402_revenue_msats_total", route="premium")
        assert revenue <= 2 * price
        return revenue == 2 * price

    await poll("both payments to be booked", booked_both, timeout=30)
