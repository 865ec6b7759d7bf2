"""A real pricing service on loopback, and an in-process gateway whose routes use it.

The pricing service is an aiohttp app on 127.0.0.1 answering the hook
contract (gateway.pricer.hook): `POST /price` with `{route, method, path,
headers}` -> `{"price_msats": N}`, where N comes from `prices[path]`. A test
switches its `mode` to make it misbehave the ways a real service does: too
slow, garbage, the wrong status, prices out of range. The gateway is the
real GatewayServer (tests/server/harness.py), with LND's invoice role the
named fake `MemoryInvoiceSource`; tests/pricing/test_regtest.py pays a hooked
price on real LND.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import yaml
from aiohttp import web

from gateway.config import load_config
from gateway.lightning.backend import Backend
from gateway.server.serve import GatewayServer
from gateway.store import open_store
from tests.server.harness import SEEN, InProcess, document, upstream_app
from tests.support.clock import FakeClock
from tests.support.invoices import MemoryInvoiceSource

DEFAULT_PRICE_MSAT = 21_000
FALLBACK_SATS = 9
MAX_SATS = 500

# What each misbehaving mode answers: (status, body bytes).
GARBAGE: dict[str, tuple[int, bytes]] = {
    "not_json": (200, b"twenty-one sats please"),
    "not_object": (200, b"[21000]"),
    "missing_key": (200, b'{"price": 21000}'),
    "float": (200, b'{"price_msats": 21000.5}'),
    "string": (200, b'{"price_msats": "21000"}'),
    "bool": (200, b'{"price_msats": true}'),
    "zero": (200, b'{"price_msats": 0}'),
    "negative": (200, b'{"price_msats": -5}'),
    "over_max": (200, b'{"price_msats": 500001}'),
    "huge_body": (200, b'{"price_msats": 21000, "pad": "' + b"x" * 8192 + b'"}'),
    "server_error": (500, b'{"price_msats": 21000}'),
    "redirect": (307, b""),
}


@dataclass
class PricingState:
    prices: dict[str, int] = field(default_factory=dict)
    mode: str = "ok"  # "ok", "slow", or a GARBAGE key
    calls: list[dict[str, Any]] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)  # never set


PRICING = web.AppKey("pricing", PricingState)


async def _price(request: web.Request) -> web.Response:
    state = request.app[PRICING]
    state.calls.append(await request.json())
    if state.mode == "slow":
        await state.never.wait()  # the gateway's deadline ends the call
    if state.mode in GARBAGE:
        status, body = GARBAGE[state.mode]
        headers = {"Location": "/price"} if status == 307 else None
        return web.Response(
            status=status, body=body, content_type="application/json", headers=headers
        )
    path = str(state.calls[-1]["path"])
    return web.json_response({"price_msats": state.prices.get(path, DEFAULT_PRICE_MSAT)})


@dataclass
class PricingService:
    url: str
    state: PricingState


@asynccontextmanager
async def pricing_service() -> AsyncIterator[PricingService]:
    app = web.Application()
    app[PRICING] = PricingState()
    app.router.add_post("/price", _price)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield PricingService(f"http://127.0.0.1:{port}/price", app[PRICING])
    finally:
        await runner.cleanup()


def hooked_route(upstream: str, hook_url: str, **pricing: Any) -> dict[str, Any]:
    """A route `dyn` on `^/dyn/` priced by the hook (fallback 9 sats, max 500 sats)."""
    return {
        "name": "dyn",
        "path": "^/dyn/",
        "upstream": upstream,
        "pricing": {
            "url": hook_url,
            "fallback_price_sats": FALLBACK_SATS,
            "max_price_sats": MAX_SATS,
            "timeout_seconds": 2,
            "headers": ["X-Model", "X-Size"],
        }
        | pricing,
    }


@asynccontextmanager
async def gateway_with(
    tmp_path: Path, edit: Callable[[dict[str, Any], str], None]
) -> AsyncIterator[InProcess]:
    """tests/server/harness.py's in-process gateway; `edit(doc, upstream_url)` changes its
    routes.yaml first (kept beside as `routes.yaml` for reload tests)."""
    upstream = web.AppRunner(upstream_app(), shutdown_timeout=0.5, handler_cancellation=True)
    await upstream.setup()
    await web.TCPSite(upstream, "127.0.0.1", 0).start()
    app = upstream.app
    assert app is not None
    upstream_url = f"http://127.0.0.1:{upstream.addresses[0][1]}"
    doc = document(upstream_url)
    edit(doc, upstream_url)
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    for name in ("tls.cert", "invoice.macaroon"):  # SIGHUP's load checks they exist
        (tmp_path / name).touch()
    config = load_config(path, check_files=False)
    invoices = MemoryInvoiceSource()
    store = await open_store("sqlite::memory:")
    clock = FakeClock()
    server = GatewayServer(
        config,
        store=store,
        backend=cast(Backend, invoices),
        clock=clock,
        shutdown_timeout=2.0,
        follow_settlements=False,
    )
    await server.start()
    session = aiohttp.ClientSession()
    try:
        yield InProcess(server, invoices, store, app[SEEN], clock, session)
    finally:
        await session.close()
        await server.stop()
        await store.close()
        await upstream.cleanup()
