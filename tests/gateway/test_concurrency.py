"""Many concurrent uses of one per-request token: exactly one is served."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter

import aiohttp
import pytest

from gateway.config import load_config
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.gateway.harness import Buy, Gateway, metric, write_config

pytestmark = pytest.mark.regtest

TEXTGEN = "/api/l402/text-generation"
CONCURRENT = 50
Outcome = tuple[int, str | None]


async def _stampede(
    session: aiohttp.ClientSession, urls: list[str], auth: dict[str, str]
) -> Counter[Outcome]:
    """CONCURRENT requests released at once, spread over `urls`."""
    start = asyncio.Event()

    async def use(i: int) -> Outcome:
        await start.wait()
        url = urls[i % len(urls)]
        async with session.post(url, json={"prompt": f"p{i}"}, headers=auth) as r:
            body = await r.json()
            if r.status == 200:
                assert body["text"] == f"echo: p{i}"
                return 200, None
            if r.status == 409:
                assert r.headers["Retry-After"] == "1"
                assert r.headers.getall("WWW-Authenticate", []) == []
            return r.status, body.get("reason") or body.get("error")

    tasks = [asyncio.create_task(use(i)) for i in range(CONCURRENT)]
    start.set()
    return Counter(await asyncio.gather(*tasks))


def _assert_one_served(outcomes: Counter[Outcome]) -> None:
    assert outcomes[(200, None)] == 1, outcomes
    assert set(outcomes) <= {(200, None), (402, "already_used"), (409, "in_use")}, outcomes


async def test_one_per_request_token_fifty_concurrent_uses(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url(TEXTGEN), "POST")
    outcomes = await _stampede(session, [gateway.url(TEXTGEN)], bought.auth)
    _assert_one_served(outcomes)
    assert await gateway.metric("l402_tokens_consumed_total", route="textgen") == 1
    assert await gateway.metric("l402_paid_requests_total", route="textgen") == 1


async def test_two_gateways_on_one_store_share_single_use(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """Two gateway instances (own listeners, caches and store connections) on one SQLite file."""
    document = copy.deepcopy(gateway.document)
    document["listen"] = {
        "public": f"127.0.0.1:{free_port()}",
        "admin": f"127.0.0.1:{free_port()}",
    }
    sibling_config = write_config(gateway.config_path.with_name("sibling.yaml"), document)
    sibling = GatewayServer(load_config(sibling_config), clock=gateway.clock)
    await sibling.start()
    try:
        bought = await buy(session, gateway.url(TEXTGEN), "POST")
        urls = [gateway.url(TEXTGEN), f"http://127.0.0.1:{sibling.public_port}{TEXTGEN}"]
        outcomes = await _stampede(session, urls, bought.auth)
        _assert_one_served(outcomes)
        async with session.get(f"http://127.0.0.1:{sibling.admin_port}/metrics") as r:
            sibling_metrics = await r.text()
        consumed = await gateway.metric("l402_tokens_consumed_total", route="textgen")
        consumed += metric(sibling_metrics, "l402_tokens_consumed_total", route="textgen")
        assert consumed == 1
    finally:
        await sibling.stop()
