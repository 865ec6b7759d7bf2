"""Metered bundles inside an app (gateway.embed) on the real regtest network.

ASGI (FastAPI under uvicorn): the middleware reads the body's `max_tokens`
ahead of the app (which still receives the whole body), puts L402-Balance on
the answer and reads the usage from the streamed body as it goes by.
aiohttp: a returned `web.Response` is read for its usage; a stream the
handler writes itself is not seen, and settles at the estimate.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.demo.llm import chat_completions
from gateway.embed import L402, L402Middleware, LndSettings, PricedRoute
from gateway.lightning.lnd import LndClient
from gateway.metering import parse_balance
from gateway.regtest.network import Descriptor
from tests.embed.shop import serve_uvicorn
from tests.gateway.harness import metric, pay, poll

pytestmark = pytest.mark.regtest

CHAT = "/v1/chat/completions"
BUNDLE = {"units": 500, "unit": "tokens", "price_sats": 4, "estimate": 77}
ROUTES = [PricedRoute("chat", f"^{CHAT}$", methods=["POST"], bundle=BUNDLE)]


def asgi_app(seller: L402, bodies: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(L402Middleware, paywall=seller)
    app.mount("/metrics", seller.metrics_asgi_app())

    @app.post(CHAT, response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        body = await request.json()  # the whole body, although the middleware read it first
        bodies.append(body)
        n = int(body["max_tokens"])
        usage = {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
        if not body.get("stream"):
            return JSONResponse({"choices": [], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            for i in range(n):
                yield f"data: {json.dumps({'choices': [{'delta': {'content': i}}]})}\n\n".encode()
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def aiohttp_app(seller: L402) -> web.Application:
    app = web.Application()
    seller.setup_aiohttp(app)
    app.router.add_post(CHAT, chat_completions)  # the demo OpenAI-compatible handler
    app.router.add_get("/metrics", seller.aiohttp_metrics)
    return app


class Shop:
    def __init__(self, base: str, session: aiohttp.ClientSession, payer: LndClient) -> None:
        self.base = base
        self.session = session
        self.payer = payer

    async def buy(self) -> dict[str, str]:
        async with self.session.post(self.base + CHAT, json={"messages": []}) as r:
            assert r.status == 402
            challenge = await r.json()
        assert challenge["price_msats"] == 4000
        preimage = await pay(self.payer, challenge["invoice"])
        return {"Authorization": f"L402 {challenge['macaroon']}:{preimage}"}

    async def chat(self, auth: dict[str, str], **body: Any) -> tuple[int, str, bytes]:
        payload = {"messages": [{"role": "user", "content": "hey"}], **body}
        async with self.session.post(self.base + CHAT, json=payload, headers=auth) as r:
            return r.status, r.headers.get("L402-Balance", ""), await r.read()

    async def served(self, metrics_path: str) -> float:
        async with self.session.get(self.base + metrics_path) as r:
            return metric(await r.text(), "l402_meter_units_served_total", route="chat")


def seller_for(regtest: Descriptor, tmp_path: Path) -> L402:
    return L402.from_routes(
        ROUTES,
        lnd=LndSettings(
            regtest.seller.rpc, regtest.seller.tls_cert, regtest.seller.invoice_macaroon
        ),
        store_url=f"sqlite://{tmp_path / 'tokens.db'}",
        options={"challenge_rate_limit": {"per_minute": 0}},
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


async def settled_at(shop: Shop, path: str, value: float) -> None:
    async def reached() -> bool:
        return await shop.served(path) == value

    await poll(f"{value} units served", reached, timeout=20, interval=0.05)


async def test_asgi_meters_json_and_streams(
    regtest: Descriptor, buyer_admin: LndClient, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    bodies: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        served = await stack.enter_async_context(
            serve_uvicorn(asgi_app(seller_for(regtest, tmp_path), bodies))
        )
        shop = Shop(served.base, session, buyer_admin)
        auth = await shop.buy()
        status, balance, _ = await shop.chat(auth, max_tokens=20)
        assert status == 200
        assert parse_balance(balance) == (480, "tokens", 20)  # max_tokens, read ahead
        assert bodies[-1]["max_tokens"] == 20  # the app got the body all the same
        await settled_at(shop, "/metrics/", 21)

        status, balance, body = await shop.chat(auth, max_tokens=30, stream=True)
        assert status == 200
        assert body.endswith(b"data: [DONE]\n\n")
        assert parse_balance(balance) == (479 - 30, "tokens", 30)
        await settled_at(shop, "/metrics/", 21 + 31)


async def test_aiohttp_meters_returned_answers_and_estimates_its_own_streams(
    regtest: Descriptor, buyer_admin: LndClient, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    runner = web.AppRunner(aiohttp_app(seller_for(regtest, tmp_path)), shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        shop = Shop(f"http://127.0.0.1:{runner.addresses[0][1]}", session, buyer_admin)
        auth = await shop.buy()
        status, balance, body = await shop.chat(auth, max_tokens=10)
        assert status == 200
        assert json.loads(body)["usage"]["total_tokens"] == 11
        assert parse_balance(balance) == (490, "tokens", 10)
        await settled_at(shop, "/metrics", 11)  # a web.Response: read for its usage

        status, _, body = await shop.chat(auth, max_tokens=5, stream=True)
        assert status == 200
        assert body.endswith(b"data: [DONE]\n\n")
        await settled_at(shop, "/metrics", 11 + 5)  # its own stream: not seen; the estimate
    finally:
        await runner.cleanup()
