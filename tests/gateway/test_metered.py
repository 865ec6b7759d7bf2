"""Metered bundles end to end (issue 18): real LND on regtest, the real gateway, SQLite.

A payment buys a bundle; paid requests draw it down by what the upstream
reports (the demo OpenAI-compatible upstream: usage = prompt words +
max_tokens), by count, or at the estimate when the answer has no usable
usage; an exhausted bundle gets a fresh 402 for the next one; concurrent
requests never spend more than the balance; a stream the client abandons
settles at its reservation.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.buyer.cache import CredentialCache
from gateway.buyer.client import L402Client, Outcome
from gateway.buyer.payers import LndPayer
from gateway.buyer.policy import SpendPolicy
from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.lightning.lnd import LndClient
from gateway.metering import parse_balance
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.keys import STORE_KEY
from gateway.store.types import Balance
from tests.gateway.harness import (
    STATE_KEY,
    Bought,
    Buy,
    Gateway,
    Upstream,
    make_test_upstream,
    poll,
    routes_document,
    write_config,
)

pytestmark = pytest.mark.regtest

CHAT = "/v1/chat/completions"
BUNDLE_TOKENS = 200
ADMIN_SECRET = "m" * 40


def chat(prompt: str = "hello world", max_tokens: int = 10, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens} | extra


# -- an upstream that also answers without usage, with broken usage, and echoes headers --


async def _no_usage(_request: web.Request) -> web.Response:
    return web.json_response({"id": "x", "choices": [{"message": {"content": "hi"}}]})


async def _malformed(_request: web.Request) -> web.Response:
    return web.json_response({"id": "x", "usage": {"prompt_tokens": "3", "completion_tokens": 4}})


async def _headers(request: web.Request) -> web.Response:
    seen = request.headers.get("Accept-Encoding")
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    return web.json_response({"accept_encoding": seen, "usage": usage})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = make_test_upstream()
    app.router.add_route("*", "/v1/odd/missing", _no_usage)
    app.router.add_route("*", "/v1/odd/malformed", _malformed)
    app.router.add_route("*", "/v1/odd/headers", _headers)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield Upstream(f"http://127.0.0.1:{runner.addresses[0][1]}", app[STATE_KEY])
    await runner.cleanup()


@pytest.fixture
def routes_config(regtest: Descriptor, upstream: Upstream, tmp_path: Path) -> Path:
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    secret = tmp_path / "admin.token"
    secret.write_text(ADMIN_SECRET)
    os.chmod(secret, 0o600)
    document["admin"] = {"token_file": str(secret)}
    u = upstream.url
    document["routes"] = [
        {
            "name": "chat",
            "path": f"^{CHAT}$",
            "methods": ["POST"],
            "upstream": u,
            "bundle": {"units": BUNDLE_TOKENS, "unit": "tokens", "price_sats": 5},
        },
        {
            "name": "odd",
            "path": "^/v1/odd/",
            "upstream": u,
            "bundle": {
                "units": 1000,
                "unit": "tokens",
                "price_sats": 2,
                "estimate": 50,
                "estimate_from": "none",
            },
        },
        {
            "name": "calls",
            "path": "^/ep212/premium-signal$",
            "upstream": u,
            "bundle": {"units": 3, "unit": "requests", "price_sats": 3},
        },
    ]
    return write_config(tmp_path / "routes.yaml", document)


def token_id(bought: Bought) -> bytes:
    return Identifier.decode(macaroons.decode(bought.macaroon).identifier).token_id


async def balance(gateway: Gateway, bought: Bought) -> Balance:
    """The balance once no reservation is held (an answer settles just after its last byte)."""
    store = gateway.server.app[STORE_KEY]
    found: list[Balance] = []

    async def settled() -> bool:
        now = int(gateway.clock())
        current = await store.get_balance(token_id(bought), now=now)
        assert current is not None
        found[:] = [current]
        return current.held == 0

    await poll("the answers to settle", settled, timeout=20, interval=0.05)
    return found[0]


async def post(
    gateway: Gateway, path: str, body: dict[str, Any], bought: Bought | None = None, **kw: Any
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    headers = dict(kw.pop("headers", {}))
    if bought is not None:
        headers["Authorization"] = bought.authorization
    async with gateway.session.post(gateway.url(path), json=body, headers=headers, **kw) as r:
        return r.status, r.headers, await r.read()


async def test_a_bundle_is_drawn_down_by_reported_usage(gateway: Gateway, buy: Buy) -> None:
    bought = await buy(gateway.session, gateway.url(CHAT), "POST", json=chat())
    assert bought.challenge["price_msats"] == 5000
    assert bought.challenge["route"] == "chat"

    status, headers, body = await post(gateway, CHAT, chat(), bought)
    assert status == 200, body
    # The header leaves before the body: what is left once this request's 10 are held.
    assert parse_balance(headers["L402-Balance"]) == (BUNDLE_TOKENS - 10, "tokens", 10)
    assert json.loads(body)["usage"]["total_tokens"] == 12  # 2 prompt words + 10
    assert (await balance(gateway, bought)).units == BUNDLE_TOKENS - 12

    # A stream with the final usage chunk: read from the tail as it went by.
    stream = chat(max_tokens=30, stream=True, stream_options={"include_usage": True})
    status, headers, body = await post(gateway, CHAT, stream, bought)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert body.endswith(b"data: [DONE]\n\n")
    assert parse_balance(headers["L402-Balance"]) == (188 - 30, "tokens", 30)
    left = await balance(gateway, bought)
    assert (left.units, left.held, left.credited, left.debited) == (156, 0, 200, 44)

    # The admin API tells the same balance, by token id or by payment hash.
    auth = {"Authorization": f"Bearer {ADMIN_SECRET}"}
    for ident in (token_id(bought).hex(), bought.challenge["payment_hash"]):
        async with gateway.session.get(
            f"{gateway.admin}/admin/balances/{ident}", headers=auth
        ) as r:
            assert r.status == 200
            shown = (await r.json())["balance"]
        assert (shown["units"], shown["unit"], shown["route"]) == (156, "tokens", "chat")

    assert await gateway.metric("l402_meter_units_sold_total", route="chat") == 200
    assert await gateway.metric("l402_meter_units_served_total", route="chat") == 44
    assert await gateway.metric("l402_meter_settlements_total", route="chat", basis="usage") == 2


async def test_metered_requests_are_read_in_plaintext(gateway: Gateway, buy: Buy) -> None:
    bought = await buy(gateway.session, gateway.url("/v1/odd/headers"), "POST", json={})
    status, _, body = await post(
        gateway, "/v1/odd/headers", {}, bought, headers={"Accept-Encoding": "gzip, br"}
    )
    assert status == 200
    assert json.loads(body)["accept_encoding"] is None  # dropped, so the tail is readable
    assert (await balance(gateway, bought)).debited == 3


async def test_missing_or_malformed_usage_settles_at_the_estimate(
    gateway: Gateway, buy: Buy
) -> None:
    bought = await buy(gateway.session, gateway.url("/v1/odd/missing"), "POST", json={})
    for path in ("/v1/odd/missing", "/v1/odd/malformed"):
        status, headers, _ = await post(gateway, path, {}, bought)
        assert status == 200
        assert parse_balance(headers["L402-Balance"]).reserved == 50
    assert (await balance(gateway, bought)).debited == 100  # the route's estimate, twice
    problems = {
        p: await gateway.metric("l402_meter_usage_problems_total", route="odd", problem=p)
        for p in ("missing", "malformed")
    }
    assert problems == {"missing": 1, "malformed": 1}
    assert await gateway.metric("l402_meter_settlements_total", route="odd", basis="estimate") == 2


async def test_an_abandoned_stream_settles_at_its_reservation(gateway: Gateway, buy: Buy) -> None:
    bought = await buy(gateway.session, gateway.url(CHAT), "POST", json=chat())
    stream = chat(max_tokens=40, stream=True, stream_options={"include_usage": True})
    headers = {"Authorization": bought.authorization, "X-Demo-Chunk-Delay-Ms": "50"}
    async with (
        aiohttp.ClientSession() as own,  # its connection is closed mid-stream
        own.post(gateway.url(CHAT), json=stream, headers=headers) as r,
    ):
        assert r.status == 200
        first = await r.content.readany()
        assert first.startswith(b"data: ")
        r.close()

    left = await balance(gateway, bought)
    assert (left.debited, left.held) == (40, 0)  # the reservation: its own max_tokens
    basis = await gateway.metric("l402_meter_settlements_total", route="chat", basis="reservation")
    assert basis == 1


async def test_fifty_parallel_requests_never_overdraw(gateway: Gateway, buy: Buy) -> None:
    bought = await buy(gateway.session, gateway.url(CHAT), "POST", json=chat())
    # Spend all but 30 tokens: 2 prompt words + 168.
    status, _, _ = await post(gateway, CHAT, chat(max_tokens=168), bought)
    assert status == 200
    assert (await balance(gateway, bought)).units == 30

    async def one() -> int:
        status, _, _ = await post(gateway, CHAT, chat("x", max_tokens=5), bought)
        return status

    statuses = await asyncio.gather(*(one() for _ in range(50)))
    assert set(statuses) <= {200, 402}, statuses
    assert 402 in statuses
    served = statuses.count(200)
    after = await balance(gateway, bought)
    name = "l402_meter_shortfall_units_total"

    async def counted() -> bool:  # the shortfall is counted once the store settled
        shortfall = await gateway.metric(name, route="chat")
        return after.debited - 170 + shortfall == served * 6

    await poll("the shortfall to be counted", counted, timeout=10)
    assert after.units >= 0
    assert after.held == 0
    assert after.debited <= after.credited == BUNDLE_TOKENS
    # Every answer used 6 (1 word + 5); what the balance could not pay is the shortfall.
    assert after.debited - 170 <= 30


async def test_exhaustion_then_a_second_payment(gateway: Gateway, buy: Buy) -> None:
    url = gateway.url("/ep212/premium-signal")
    bought = await buy(gateway.session, url)
    left = []
    for _ in range(3):
        async with gateway.session.get(url, headers=bought.auth) as r:
            assert r.status == 200
            left.append(parse_balance(r.headers["L402-Balance"]).available)
    assert left == [2, 1, 0]
    async with gateway.session.get(url, headers=bought.auth) as r:
        assert r.status == 402
        refusal = await r.json()
        assert r.headers["L402-Balance"] == "0;unit=requests"
    assert refusal["reason"] == "exhausted"
    assert refusal["price_msats"] == 3000
    assert refusal["payment_hash"] != bought.challenge["payment_hash"]

    again = await buy(gateway.session, url)  # the next bundle: a new token
    async with gateway.session.get(url, headers=again.auth) as r:
        assert r.status == 200
        assert parse_balance(r.headers["L402-Balance"]).available == 2
    async with gateway.session.get(url, headers=bought.auth) as r:
        assert r.status == 402  # the first bundle stays spent
    assert await gateway.metric("l402_meter_units_sold_total", route="calls") == 6
    assert await gateway.metric("l402_meter_units_served_total", route="calls") == 4
    assert await gateway.metric("l402_meter_exhausted_total", route="calls") == 2


async def test_the_buyer_keeps_a_bundle_and_rebuys_within_its_policy(
    gateway: Gateway, buyer_admin: LndClient
) -> None:
    """l402-buyer's client: one payment for three calls, a new bundle when the seller says
    the old one ran dry, and no third purchase past its budget."""
    url = gateway.url("/ep212/premium-signal")
    payer = LndPayer(buyer_admin)
    policy = SpendPolicy(max_spend_msats=5_000, budget_msats=6_000, expected_network="bcrt")
    events: list[str] = []
    client = L402Client(
        gateway.session,
        payer,
        policy,
        CredentialCache(),
        events=lambda name, _: events.append(name),
    )
    results = [await client.fetch("GET", url) for _ in range(7)]
    assert [r.status for r in results] == [200, 200, 200, 200, 200, 200, 402]
    assert [r.paid for r in results] == [True, False, False, True, False, False, False]
    assert [r.balance.available if r.balance else None for r in results] == [2, 1, 0, 2, 1, 0, 0]
    assert [r.exhausted for r in results] == [False, False, False, True, False, False, True]
    assert events.count("bundle_exhausted") == 2
    assert payer.calls == 2  # the third bundle would pass the 6,000 msat budget: denied
    assert results[-1].outcome is Outcome.DENIED
    assert policy.spent_msats == 6_000
