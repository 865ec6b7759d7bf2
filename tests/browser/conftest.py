"""A real headless Chromium (Debian's package, driven by Playwright) buying from the gateway.

The page is served from one loopback origin (http://127.0.0.1:P1) and the
gateway from another (http://localhost:P2); a third origin
(http://127.0.0.1:P3) is not in the gateway's `allow_origins`. The gateway
sells on the real regtest seller LND; the page's "wallet" is an endpoint of
its own origin that pays the invoice out of band with the buyer LND.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from playwright.async_api import BrowserContext, async_playwright

from gateway.config import load_config
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.browser.shop import (
    CHROMIUM_FLAGS,
    PAID_KEY,
    PRICES_SATS,
    Shop,
    page_app,
    serve,
    upstream_answer,
)
from tests.websocket.harness import AccessLog


def find_chromium() -> str:
    """Debian's chromium (or L402_CHROMIUM); missing: fail in CI, skip elsewhere."""
    found = os.environ.get("L402_CHROMIUM") or shutil.which("chromium")
    if found is None:
        message = (
            "chromium is not installed: run scripts/ensure-system-deps.sh "
            "(Debian's chromium package), or set L402_CHROMIUM"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    return find_chromium()


@pytest.fixture
async def browser(chromium: str, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            timeout=60_000,
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def shop(
    chromium: str, regtest: Descriptor, buyer_admin: LndClient, tmp_path: Path
) -> AsyncIterator[Shop]:
    async with AsyncExitStack() as stack:
        upstream = web.Application()
        upstream.router.add_get("/{tail:.*}", upstream_answer)
        upstream_port = await serve(upstream, stack)
        wallet_page = page_app(buyer_admin)
        page_origin = f"http://127.0.0.1:{await serve(wallet_page, stack)}"
        other_origin = f"http://127.0.0.1:{await serve(page_app(buyer_admin), stack)}"
        port = free_port()
        seller = regtest.seller
        document: dict[str, Any] = {
            "listen": {"public": f"127.0.0.1:{port}", "admin": f"127.0.0.1:{free_port()}"},
            "lnd": {
                "host": seller.rpc,
                "tls_cert": seller.tls_cert,
                "macaroon": seller.invoice_macaroon,
            },
            "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
            "cors": {"allow_origins": [page_origin]},
            "routes": [
                {
                    "name": name,
                    "path": f"^/{name}$",
                    "upstream": f"http://127.0.0.1:{upstream_port}",
                    "price_sats": price,
                }
                for name, price in PRICES_SATS.items()
            ],
        }
        document["routes"][1]["cors"] = {
            "allow_origins": [page_origin],
            "allow_credentials": True,
        }
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        server = GatewayServer(load_config(path), shutdown_timeout=2.0)
        await server.start()
        stack.push_async_callback(server.stop)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        stack.push_async_callback(session.close)
        yield Shop(
            server,
            page_origin,
            other_origin,
            f"http://localhost:{server.public_port}",
            session,
            wallet_page[PAID_KEY],
            tmp_path / "tokens.db",
        )


@pytest.fixture
def access() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger("gateway.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
