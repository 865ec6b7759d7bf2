"""The embedded middleware in FastAPI (uvicorn) and aiohttp apps, with the named fake LND role.

Every test runs against both frameworks (the `shop` fixture). Real servers,
sockets, store and metrics; tests/embed/test_embed_regtest.py pays on real LND.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.l402 import challenge as l402_challenge
from tests.embed.conftest import Shop
from tests.gateway.harness import poll


async def test_unpaid_is_a_402_challenge_and_never_reaches_the_app(shop: Shop) -> None:
    async with shop.session.get(shop.url("/premium")) as r:
        assert r.status == 402
        body = await r.json()
        www = r.headers.getall("WWW-Authenticate")
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["Content-Type"].startswith("application/json")
    assert [w.split(" ", 1)[0] for w in www] == list(l402_challenge.SCHEMES)  # LSAT, then L402
    for value in www:
        assert f'invoice="{body["invoice"]}"' in value
        assert f'macaroon="{body["macaroon"]}"' in value
        assert 'amount_msats="10000"' in value
    assert body["error"] == "payment_required"
    assert (body["route"], body["price_msats"]) == ("premium", 10_000)
    assert shop.invoices.calls == [(10_000, "L402 premium", 3600, True)]
    assert shop.seen.calls["premium"] == 0


async def test_paid_request_reaches_the_apps_handler_with_the_payment(shop: Shop) -> None:
    auth = await shop.buy("/premium")
    for _ in range(2):  # reusable: the same credential buys again
        async with shop.session.get(shop.url("/premium"), headers=auth) as r:
            assert r.status == 200
            body = await r.json()
        assert body["signal"] == "buy"
        assert body["paid"]["route"] == "premium"
        assert body["paid"]["single_use"] is False
        assert len(body["paid"]["token_id"]) == 64
    assert shop.seen.calls["premium"] == 2
    # Another route's credential does not buy this one.
    async with shop.session.post(shop.url("/once"), headers=auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "wrong_route")


async def test_a_forged_credential_gets_a_fresh_challenge(shop: Shop) -> None:
    auth = await shop.buy("/premium")
    forged = {"Authorization": auth["Authorization"][:-4] + "0000"}
    async with shop.session.get(shop.url("/premium"), headers=forged) as r:
        assert r.status == 402
        body = await r.json()
    assert (body["error"], body["reason"]) == ("invalid_credential", "preimage_mismatch")
    assert body["invoice"]
    assert shop.seen.calls["premium"] == 0


async def test_per_request_token_is_consumed_once(shop: Shop) -> None:
    auth = await shop.buy("/once", "POST")
    async with shop.session.post(shop.url("/once"), data=b"hello", headers=auth) as r:
        assert r.status == 200
        assert (await r.json())["size"] == 5
    async with shop.session.post(shop.url("/once"), data=b"hello", headers=auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "already_used")
    assert shop.seen.calls["once"] == 1
    assert await shop.metric("l402_tokens_consumed_total", route="once") == 1


async def test_app_5xx_or_exception_keeps_the_token_and_4xx_consumes_it(shop: Shop) -> None:
    auth = await shop.buy("/once", "POST")
    # uvicorn closes the connection after an app exception: none is kept for reuse.
    closing = {**auth, "Connection": "close"}
    for query in ("?status=500", "?status=503", "?fail=1"):
        async with shop.session.post(shop.url("/once" + query), headers=closing) as r:
            assert r.status >= 500
    async with shop.session.post(shop.url("/once?status=404"), headers=auth) as r:
        assert r.status == 404  # the app answered: the buyer got what it paid for
    async with shop.session.post(shop.url("/once"), headers=auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "already_used")
    assert shop.seen.calls["once"] == 4
    assert await shop.metric("l402_tokens_consumed_total", route="once") == 1
    assert await shop.answers("once", "5xx") == 2
    assert await shop.answers("once", "error") == 1


async def test_concurrent_use_of_a_per_request_token_is_409(shop: Shop) -> None:
    auth = await shop.buy("/hold")
    first = asyncio.create_task(shop.session.get(shop.url("/hold"), headers=auth))
    await shop.seen.entered.get()
    async with shop.session.get(shop.url("/hold"), headers=auth) as r:
        assert (r.status, r.headers["Retry-After"]) == (409, "1")
        assert (await r.json())["error"] == "in_use"
    shop.seen.release.set()
    async with await first as r:
        assert r.status == 200
    assert shop.seen.calls["hold"] == 1


async def test_a_lapsed_lease_taken_over_turns_the_late_answer_into_409(shop: Shop) -> None:
    """The proxy's rule: a request that outlived its lease is not answered as paid."""
    auth = await shop.buy("/hold")
    late = asyncio.create_task(shop.session.get(shop.url("/hold"), headers=auth))
    await shop.seen.entered.get()
    route = shop.seller.config.routes.by_name("hold")
    assert route is not None
    shop.clock.advance(route.lease_seconds + 1)
    prompt = asyncio.create_task(shop.session.get(shop.url("/hold"), headers=auth))
    await shop.seen.entered.get()  # the lapsed lease was taken over
    shop.seen.release.set()
    async with await late as r:
        assert (r.status, (await r.json())["error"]) == (409, "lease_lost")
    async with await prompt as r:
        assert r.status == 200
    assert await shop.metric("l402_tokens_consumed_total", route="hold") == 1


async def test_a_streamed_answer_spends_the_token_when_it_starts(shop: Shop) -> None:
    """Settled as the answer starts, not when the stream ends: no second sale meanwhile."""
    auth = await shop.buy("/hold")
    shop.seen.release.set()
    async with shop.session.get(shop.url("/hold?stream=1"), headers=auth) as streaming:
        assert streaming.status == 200
        assert await streaming.content.readexactly(len(b"first part;")) == b"first part;"
        async with shop.session.get(shop.url("/hold"), headers=auth) as again:
            assert (again.status, (await again.json())["reason"]) == (402, "already_used")
        shop.seen.finish.set()
        assert await streaming.read() == b"last part"
    assert await shop.metric("l402_tokens_consumed_total", route="hold") == 1


async def test_a_late_stream_that_lost_its_lease(shop: Shop) -> None:
    """ASGI holds the answer's start: 409 as the proxy. aiohttp has readied the connection
    for the app's own stream when the lease is found lost: served, and logged."""
    auth = await shop.buy("/hold")
    late = asyncio.create_task(shop.session.get(shop.url("/hold?stream=1"), headers=auth))
    await shop.seen.entered.get()
    route = shop.seller.config.routes.by_name("hold")
    assert route is not None
    shop.clock.advance(route.lease_seconds + 1)
    prompt = asyncio.create_task(shop.session.get(shop.url("/hold"), headers=auth))
    await shop.seen.entered.get()
    shop.seen.let_go()
    async with await late as r:
        if shop.kind == "fastapi":
            assert (r.status, (await r.json())["error"]) == (409, "lease_lost")
        else:
            assert (r.status, await r.read()) == (200, b"first part;last part")
    async with await prompt as r:
        assert r.status == 200
    assert await shop.metric("l402_tokens_consumed_total", route="hold") == 1


async def test_free_and_unpriced_routes_are_the_apps_own(shop: Shop) -> None:
    for path in ("/premium/preview", "/open", "/once"):  # GET /once: only POST is priced
        async with shop.session.get(shop.url(path)) as r:
            assert r.status == 200, path
            assert "WWW-Authenticate" not in r.headers
    async with shop.session.get(shop.url("/premium/preview")) as r:
        assert (await r.json())["paid"] is None
    async with shop.session.get(shop.url("/nowhere")) as r:
        assert r.status == 404  # the app's own 404
    assert shop.invoices.calls == []
    assert dict(shop.seen.calls) == {"preview": 2, "open": 1, "once_read": 1}


async def test_a_path_without_normal_form_is_refused_not_passed(shop: Shop) -> None:
    """An encoded slash could reach a priced handler through the app's own decoding."""
    async with shop.session.get(shop.url("/premium%2Fx")) as r:
        assert r.status == 400
        assert (await r.json())["error"] == "bad_path"
    async with shop.session.get(shop.url("/x/../premium")) as r:
        assert r.status == 402  # dot segments cannot hide a priced path


async def test_metrics_count_what_was_sold(shop: Shop) -> None:
    auth = await shop.buy("/premium")
    async with shop.session.get(shop.url("/premium"), headers=auth) as r:
        assert r.status == 200
    assert await shop.metric("l402_challenges_issued_total", route="premium") == 1
    assert await shop.metric("l402_paid_requests_total", route="premium") == 1
    assert await shop.answers("premium", "2xx") == 1
    assert await shop.metric("l402_upstream_latency_seconds_count", route="premium") == 1
    assert await shop.metric("l402_gateway_added_latency_seconds_count", route="premium") == 1
    bad = {"Authorization": "L402 bm90IGEgbWFjYXJvb24=:" + "ab" * 32}
    async with shop.session.get(shop.url("/premium"), headers=bad) as r:
        assert r.status == 402
    assert await shop.metric("l402_auth_failures_total", route="premium", reason="malformed") == 1


async def test_client_gone_before_the_answer_keeps_the_token(shop: Shop) -> None:
    auth = await shop.buy("/hold")
    writer = await shop.send_raw_get("/hold", auth)
    request = await shop.seen.entered.get()
    if shop.kind == "fastapi":
        open_before = shop.served.connections()
        writer.close()
        await poll("uvicorn to see the client leave", _fewer(shop, open_before), timeout=10)
    else:
        writer.close()
        await poll("aiohttp to see the client leave", _gone(request), timeout=10)
    shop.seen.release.set()
    # The app's answer went nowhere: the token is still good for one answer.
    await poll("the abandoned request to finish", _settled(shop), timeout=10)
    async with shop.session.get(shop.url("/hold"), headers=auth) as r:
        assert r.status == 200
    async with shop.session.get(shop.url("/hold"), headers=auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "already_used")
    assert await shop.metric("l402_tokens_consumed_total", route="hold") == 1


def _fewer(shop: Shop, before: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return shop.served.connections() < before

    return check


def _gone(request: web.Request) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return request.transport is None

    return check


def _settled(shop: Shop) -> Callable[[], Awaitable[bool]]:
    """The held request's answer was counted (the middleware has settled it)."""

    async def check() -> bool:
        return await shop.answers("hold", "2xx") == 1

    return check


async def test_bad_input_in_code_config_is_a_located_error(tmp_path: Path) -> None:
    from gateway.config.errors import ConfigErrors
    from gateway.embed import L402, PricedRoute
    from tests.embed.conftest import dummy_lnd

    with pytest.raises(ConfigErrors) as caught:
        L402.from_routes(
            [
                PricedRoute("ok", "^/ok$", price_sats=1),
                PricedRoute("neg", "^/neg$", price_sats=-1),
                {"name": "proxy", "path": "^/p$", "price_sats": 1, "upstream": "http://x"},
                PricedRoute("both", "^/b$", price_sats=1, price_msats=1000),
            ],
            lnd=dummy_lnd(tmp_path),
            store_url="sqlite::memory:",
        )
    text = str(caught.value)
    assert "routes[1].price_sats: must be >= 0" in text
    assert "routes[2].upstream: proxy-only" in text
    assert "routes[3].price_sats: only one of price_sats / price_msats" in text
    assert all(e.file == "L402.from_routes" and e.line == 0 for e in caught.value.errors)


async def test_not_started_sells_nothing_but_free_routes_work(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Without lifespan events (uvicorn --lifespan off) or the cleanup context: 503."""
    from contextlib import AsyncExitStack

    from tests.embed.conftest import open_shop

    for kind, serving in (("fastapi", {"lifespan": "off"}), ("aiohttp", {})):
        async with AsyncExitStack() as stack:
            shop = await open_shop(kind, tmp_path, session, stack, **serving)
            if kind == "aiohttp":
                await shop.seller.stop()  # as if the cleanup context had ended
            async with session.get(shop.url("/premium")) as r:
                assert (r.status, r.headers["Retry-After"]) == (503, "5"), kind
                assert (await r.json())["error"] == "not_started"
            async with session.get(shop.url("/premium/preview")) as r:
                assert r.status == 200
            assert shop.invoices.calls == []


async def test_websocket_route_is_paid_at_the_handshake(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    from contextlib import AsyncExitStack

    from tests.embed.conftest import open_shop

    async with AsyncExitStack() as stack:
        shop = await open_shop("fastapi", tmp_path, session, stack)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(shop.url("/ws"))
        assert refused.value.status == 402  # sent through the denial-response extension
        assert shop.seen.calls["ws"] == 0
        auth = await shop.buy("/ws")
        async with session.ws_connect(shop.url("/ws"), headers=auth) as ws:
            await ws.send_str("hello")
            assert await ws.receive_json() == {"echo": "hello", "route": "ws"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as used:  # per-request: one session
            await session.ws_connect(shop.url("/ws"), headers=auth)
        assert used.value.status == 402
        assert shop.seen.calls["ws"] == 1
        assert await shop.metric("l402_tokens_consumed_total", route="ws") == 1


async def test_aiohttp_handler_cancelled_by_a_leaving_client_keeps_the_token(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """With `handler_cancellation` aiohttp cancels the handler: the lease is given back."""
    from contextlib import AsyncExitStack

    from tests.embed.conftest import open_shop

    async with AsyncExitStack() as stack:
        shop = await open_shop("aiohttp", tmp_path, session, stack, handler_cancellation=True)
        auth = await shop.buy("/hold")
        writer = await shop.send_raw_get("/hold", auth)
        await shop.seen.entered.get()
        writer.close()

        async def counted_as_error() -> bool:
            return await shop.answers("hold", "error") == 1

        await poll("the cancelled handler to be counted", counted_as_error, timeout=10)
        shop.seen.release.set()
        async with session.get(shop.url("/hold"), headers=auth) as r:
            assert r.status == 200
        assert await shop.metric("l402_tokens_consumed_total", route="hold") == 1


async def test_a_seller_that_cannot_start_fails_the_servers_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import uvicorn

    from gateway.embed import L402
    from tests.embed.conftest import OPTIONS, dummy_lnd
    from tests.embed.shop import ROUTES, Seen, _listening_socket, fastapi_app

    seller = L402.from_routes(
        ROUTES,
        lnd=dummy_lnd(tmp_path),
        store_url=f"sqlite://{tmp_path}/tls.cert/tokens.db",  # under a file: cannot open
        options=OPTIONS,
    )
    sock = _listening_socket()
    server = uvicorn.Server(uvicorn.Config(fastapi_app(seller, Seen()), lifespan="on"))
    with pytest.raises(SystemExit):  # uvicorn's way to say "Application startup failed"
        async with asyncio.timeout(15):
            await server.serve(sockets=[sock])
    sock.close()
    assert not server.started
    assert not seller.running
    errors = [getattr(r, "error", "") for r in caplog.records if r.name == "gateway.embed"]
    assert errors[0].startswith("L402 middleware could not start: StoreError: cannot open")
