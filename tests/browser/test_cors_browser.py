"""CORS proven in a real browser: a page on another origin buys an L402 resource with fetch().

Chromium enforces CORS itself, so these tests show what a browser buyer can
and cannot read: the 402's two WWW-Authenticate values and JSON body, the
paid 200, the preflights that mint nothing, a page on an origin the gateway
does not allow (its fetch rejects), and credentialed requests.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page

from tests.browser.shop import PRICES_SATS, Shop
from tests.websocket.harness import AccessLog

pytestmark = [pytest.mark.regtest, pytest.mark.browser]

PAGE_DEADLINE = 90  # seconds for one page script, payment included
_CHALLENGE = re.compile(
    r'^LSAT macaroon="[A-Za-z0-9+/=]+", invoice="lnbcrt[0-9a-z]+", amount_msats="\d+", '
    r'L402 macaroon="[A-Za-z0-9+/=]+", invoice="lnbcrt[0-9a-z]+", amount_msats="\d+"$'
)


async def run(page: Page, script: str, *args: Any) -> Any:
    async with asyncio.timeout(PAGE_DEADLINE):
        return await page.evaluate(script, list(args))


async def test_page_on_another_origin_buys_and_reads_the_200(
    browser: BrowserContext, shop: Shop, access: AccessLog
) -> None:
    page = await shop.open(browser, shop.page_origin)
    result = await run(page, "([url]) => buy(url, 'omit')", shop.url("/premium"))
    assert result["challengeStatus"] == 402
    # Both WWW-Authenticate values, LSAT first, as the browser exposes them (joined).
    assert _CHALLENGE.match(result["wwwAuthenticate"]), result["wwwAuthenticate"]
    challenge = result["challenge"]
    assert challenge["invoice"].startswith("lnbcrt")
    assert (challenge["price_msats"], challenge["route"]) == (
        PRICES_SATS["premium"] * 1000,
        "premium",
    )
    assert challenge["invoice"] in result["wwwAuthenticate"]
    assert result["paidStatus"] == 200
    assert result["body"] == {"ok": True, "path": "/premium", "signal": "buy", "auth": True}
    assert shop.paid == [challenge["invoice"]]
    # One preflight (its Allow-Headers and Max-Age cover the retry's Authorization too),
    # one unpaid GET, one paid GET: one invoice minted, one token row stored.
    assert access.outcomes("premium") == ["preflight", "challenge", "paid"]
    assert await shop.metric("l402_challenges_issued_total", route="premium") == 1
    assert shop.token_rows() == 1
    assert await shop.metric("l402_paid_requests_total", route="premium") == 1


async def test_preflight_alone_mints_nothing(
    browser: BrowserContext, shop: Shop, access: AccessLog
) -> None:
    """A header the policy does not allow: the browser preflights, reads the answer,
    and never sends the request. The preflight reached the gateway and minted nothing."""
    page = await shop.open(browser, shop.page_origin)
    result = await run(
        page, "([url]) => peek(url, {headers: {'X-Not-Allowed': '1'}})", shop.url("/premium")
    )
    assert result == {"error": "TypeError"}
    assert access.outcomes("premium") == ["preflight"]
    assert await shop.metric("l402_challenges_issued_total", route="premium") == 0
    assert shop.token_rows() == 0


async def test_page_on_an_origin_not_allowed_cannot_read_the_402(
    browser: BrowserContext, shop: Shop, access: AccessLog
) -> None:
    page = await shop.open(browser, shop.other_origin)
    preflighted = await run(
        page, "([url]) => peek(url, {headers: {'X-Request-Id': 'x'}})", shop.url("/premium")
    )
    assert preflighted == {"error": "TypeError"}
    # The preflight was answered without CORS headers, so the GET was never sent.
    assert access.outcomes("premium") == ["preflight"]
    assert await shop.metric("l402_challenges_issued_total", route="premium") == 0
    simple = await run(page, "([url]) => peek(url, {})", shop.url("/premium"))
    assert simple == {"error": "TypeError"}  # sent (no preflight needed), but unreadable
    assert await shop.metric("l402_challenges_issued_total", route="premium") == 1


async def test_credentialed_fetch_works_only_where_allow_credentials_is_on(
    browser: BrowserContext, shop: Shop
) -> None:
    page = await shop.open(browser, shop.page_origin)
    result = await run(page, "([url]) => buy(url, 'include')", shop.url("/cred"))
    assert (result["challengeStatus"], result["paidStatus"]) == (402, 200)
    assert result["challenge"]["price_msats"] == PRICES_SATS["cred"] * 1000
    refused = await run(page, "([url]) => buy(url, 'include')", shop.url("/premium"))
    assert refused == {"stage": "challenge", "error": "TypeError"}
