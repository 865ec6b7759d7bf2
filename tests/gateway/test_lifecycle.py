"""State that outlives a request: restarts, revocation, reloads, settlement accounting."""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.lightning.lnd import LndClient
from gateway.store import open_store
from tests.gateway.harness import (
    PRICES_SATS,
    Buy,
    Gateway,
    fetch,
    pay,
    poll,
    route_of,
    write_config,
)

pytestmark = pytest.mark.regtest

PREMIUM = "/ep212/premium-signal"
TEXTGEN = "/api/l402/text-generation"
L402_GATEWAY = Path(sys.executable).with_name("l402-gateway")


async def test_restart_keeps_tokens_and_their_use(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    reusable = await buy(session, gateway.url(PREMIUM))
    single = await buy(session, gateway.url(TEXTGEN), "POST")
    prompt = {"prompt": "once"}
    status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM), headers=reusable.auth)
    assert status == 200
    status, _, _ = await fetch(
        session, "POST", gateway.url(TEXTGEN), json=prompt, headers=single.auth
    )
    assert status == 200

    await gateway.restart()

    status, _, body = await fetch(session, "GET", gateway.url(PREMIUM), headers=reusable.auth)
    assert status == 200, body
    async with session.post(gateway.url(TEXTGEN), json=prompt, headers=single.auth) as r:
        assert r.status == 402
        assert (await r.json())["reason"] == "already_used"

    # The first server flushed its paid-request counts to the store when it stopped.
    store = await open_store(gateway.document["store"]["url"])
    try:
        rows = await store.revenue_report()
    finally:
        await store.close()
    paid = {r.route: r.paid_requests for r in rows}
    assert paid.get("premium") == 1
    assert paid.get("textgen") == 1


async def test_revoke_then_reload(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url(PREMIUM))
    status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM), headers=bought.auth)
    assert status == 200  # now in the verified cache

    token_id = Identifier.decode(macaroons.decode(bought.macaroon).identifier).token_id.hex()
    proc = await asyncio.create_subprocess_exec(
        str(L402_GATEWAY),
        "revoke",
        token_id,
        "--config",
        str(gateway.config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert token_id in out.decode()

    assert gateway.server.reload(gateway.config_path)  # what SIGHUP does
    async with session.get(gateway.url(PREMIUM), headers=bought.auth) as r:
        assert r.status == 402
        body = await r.json()
    assert body["reason"] == "revoked"
    assert body["macaroon"] != bought.macaroon
    assert await gateway.metric("l402_auth_failures_total", route="premium", reason="revoked") == 1

    # Revoking it again is reported, not silently accepted.
    proc = await asyncio.create_subprocess_exec(
        str(L402_GATEWAY), "revoke", token_id, "--config", str(gateway.config_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 60) == 1


async def test_reload_invalid_keeps_old_routes_valid_changes_price(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url(PREMIUM))
    good = copy.deepcopy(gateway.document)

    invalid = copy.deepcopy(good)
    route_of(invalid, "premium")["price_sats"] = -5
    route_of(invalid, "expensive")["colour"] = "red"
    assert gateway.server.reload(write_config(gateway.config_path, invalid)) is False
    async with session.get(gateway.url(PREMIUM)) as r:
        assert r.status == 402
        assert (await r.json())["price_msats"] == PRICES_SATS["premium"] * 1000
    status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM), headers=bought.auth)
    assert status == 200

    gateway.config_path.write_text("routes: [unclosed\n")
    assert gateway.server.reload(gateway.config_path) is False

    changed = copy.deepcopy(good)
    route_of(changed, "premium")["price_sats"] = 20
    assert gateway.server.reload(write_config(gateway.config_path, changed)) is True
    async with session.get(gateway.url(PREMIUM)) as r:
        assert r.status == 402
        body = await r.json()
        assert body["price_msats"] == 20_000
        assert all('amount_msats="20000"' in v for v in r.headers.getall("WWW-Authenticate"))
    # The old token was minted for the same route name: still good.
    status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM), headers=bought.auth)
    assert status == 200

    assert await gateway.metric("l402_config_reloads_total", result="error") == 2
    assert await gateway.metric("l402_config_reloads_total", result="ok") == 1


async def _booked(gateway: Gateway, route: str, want: float) -> None:
    async def check() -> bool:
        got = await gateway.metric("l402_revenue_msats_total", route=route)
        assert got <= want, f"revenue overshot: {got} > {want}"
        return got == want

    await poll(f"revenue of {route} to reach {want}", check, timeout=30)


async def test_settlement_books_revenue_once(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    price = PRICES_SATS["premium"] * 1000
    assert await gateway.metric("l402_revenue_msats_total", route="premium") == 0
    await buy(session, gateway.url(PREMIUM))
    await _booked(gateway, "premium", price)
    assert await gateway.metric("l402_settled_invoices_total", route="premium") == 1
    first_index = await gateway.metric("l402_settle_index")
    assert first_index > 0

    store = await open_store(gateway.document["store"]["url"])
    try:
        rows = await store.revenue_report()
        assert await store.last_settle_index() == first_index
    finally:
        await store.close()
    assert [(r.route, r.settled_invoices, r.revenue_msat) for r in rows] == [("premium", 1, price)]

    # A new gateway on the same store resumes after the booked settle index: buying
    # again books only the new payment (stream order: a replay would arrive first).
    await gateway.restart()
    await buy(session, gateway.url(PREMIUM))
    await _booked(gateway, "premium", price)
    assert await gateway.metric("l402_settled_invoices_total", route="premium") == 1
    assert await gateway.metric("l402_settle_index") > first_index

    store = await open_store(gateway.document["store"]["url"])
    try:
        rows = await store.revenue_report()
    finally:
        await store.close()
    assert [(r.route, r.settled_invoices, r.revenue_msat) for r in rows] == [
        ("premium", 2, 2 * price)
    ]


@pytest.mark.parametrize("booked_before", [False, True], ids=["fresh-store", "resumed-store"])
async def test_payment_settled_while_no_gateway_ran_is_booked(
    gateway: Gateway,
    session: aiohttp.ClientSession,
    buy: Buy,
    buyer_admin: LndClient,
    booked_before: bool,
) -> None:
    """A buyer pays while the gateway is down (deploy, crash): the next one books it."""
    price = PRICES_SATS["premium"] * 1000
    if booked_before:
        await buy(session, gateway.url(PREMIUM))
        await _booked(gateway, "premium", price)
    async with session.get(gateway.url(PREMIUM)) as r:
        assert r.status == 402
        challenge = await r.json()
    await gateway.stop()
    await pay(buyer_admin, challenge["invoice"])  # settles with no gateway following

    await gateway.start_new()
    await _booked(gateway, "premium", price)
    store = await open_store(gateway.document["store"]["url"])
    try:
        rows = await store.revenue_report()
    finally:
        await store.close()
    settled = 2 if booked_before else 1
    assert [(r.route, r.settled_invoices, r.revenue_msat) for r in rows] == [
        ("premium", settled, settled * price)
    ]
