"""The browser suite's cast: an upstream, the page's origin (with its wallet), the gateway."""

from __future__ import annotations

import sqlite3
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import BrowserContext, Page

from gateway.lightning.lnd import LndClient
from gateway.server.serve import GatewayServer
from tests.gateway.harness import metric, pay

PAGE = Path(__file__).with_name("page.html")
# The flags that work in this sandbox; Playwright adds --headless, and each test
# gets a fresh --user-data-dir (launch_persistent_context in tmp_path).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PRICES_SATS = {"premium": 10, "cred": 3}


async def upstream_answer(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "ok": True,
            "path": request.path,
            "signal": "buy",
            "auth": "Authorization" in request.headers,
        }
    )


PAYER_KEY = web.AppKey("payer", LndClient)
PAID_KEY = web.AppKey("paid", list)


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})


async def _wallet_pay(request: web.Request) -> web.Response:
    """The page's wallet: pays out of band on the buyer node, returns the preimage."""
    invoice = (await request.json())["invoice"]
    preimage = await pay(request.app[PAYER_KEY], invoice)
    request.app[PAID_KEY].append(invoice)
    return web.json_response({"preimage": preimage})


async def serve(app: web.Application, stack: AsyncExitStack) -> int:
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return int(runner.addresses[0][1])


def page_app(payer: LndClient) -> web.Application:
    app = web.Application()
    app[PAYER_KEY] = payer
    app[PAID_KEY] = []
    app.router.add_get("/", _page)
    app.router.add_post("/wallet/pay", _wallet_pay)
    return app


@dataclass
class Shop:
    server: GatewayServer
    page_origin: str
    other_origin: str
    gateway_origin: str  # http://localhost:P2: another origin than the page's
    session: aiohttp.ClientSession
    paid: list[str]
    store: Path

    def url(self, path: str) -> str:
        return self.gateway_origin + path

    def token_rows(self) -> int:
        """Tokens stored by the gateway: one per challenge minted."""
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM l402_tokens").fetchone()
        return int(count)

    async def metric(self, name: str, **labels: str) -> float:
        async with self.session.get(f"http://127.0.0.1:{self.server.admin_port}/metrics") as r:
            return metric(await r.text(), name, **labels)

    async def open(self, browser: BrowserContext, origin: str) -> Page:
        page = await browser.new_page()
        await page.goto(origin + "/")
        return page
