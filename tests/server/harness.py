"""An in-process gateway for unit tests of the request path (no LND, no files).

The gateway is the real `GatewayServer` (edge listener, middlewares, handler,
proxy, leases) on a real in-memory SQLite store, in front of a real aiohttp
upstream on 127.0.0.1. Only LND's invoice role is the named fake
`MemoryInvoiceSource`; the regtest suites (tests/gateway) cover the same
paths on real LND.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
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
from gateway.store.roles import Store
from tests.support.clock import FakeClock
from tests.support.documents import in_process_document
from tests.support.invoices import MemoryInvoiceSource


@dataclass
class Seen:
    """What the test upstream received."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # a request's head arrived
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


SEEN = web.AppKey("seen", Seen)


async def _record(request: web.Request) -> web.Response:
    request.app[SEEN].entered.set()
    body = await request.read()
    entry = {
        "method": request.method,
        "raw_path": request.raw_path,
        "headers": [[k, v] for k, v in request.headers.items()],
        "size": len(body),
    }
    request.app[SEEN].requests.append(entry)
    status = int(request.query.get("status", "200"))
    return web.json_response(entry, status=status)


async def _hold(request: web.Request) -> web.Response:
    seen = request.app[SEEN]
    seen.held.set()
    try:
        await seen.hold.wait()
    except asyncio.CancelledError:
        seen.cancelled.set()
        raise
    return web.json_response({"held": True})


def upstream_app() -> web.Application:
    app = web.Application()
    app[SEEN] = Seen()
    app.router.add_route("*", "/hold", _hold)
    app.router.add_route("*", "/{tail:.*}", _record)
    return app


def document(
    upstream: str,
    patch: dict[str, dict[str, Any]] | None = None,
    extra: list[dict[str, Any]] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A routes.yaml for the in-process gateway; `top` overrides top-level keys,
    `patch[name]` adds keys to one route and `extra` routes (their `upstream` is the test
    upstream) come first."""
    routes = [
        {"name": "free", "path": "^/free", "upstream": upstream, "price_sats": 0},
        {"name": "paid", "path": "^/paid", "upstream": upstream, "price_sats": 10},
        {
            "name": "once",
            "path": "^/once",
            "upstream": upstream,
            "price_sats": 42,
            "token_mode": "per-request",
            "methods": ["POST"],
            "request_body_timeout_seconds": 2,
        },
        {
            "name": "expiring",
            "path": "^/expiring$",
            "upstream": upstream,
            "price_sats": 5,
            "token_validity_seconds": 60,
        },
        {
            "name": "cap",
            "path": "^/cap$",
            "upstream": upstream,
            "price_sats": 3,
            "capabilities": ["read", "write"],
            "required_capability": "write",
        },
        {"name": "held", "path": "^/hold$", "upstream": upstream, "price_sats": 7,
         "token_mode": "per-request"},
        {"name": "reads", "path": "^/resource$", "upstream": upstream, "price_sats": 1,
         "methods": ["GET", "HEAD"]},
    ]  # fmt: skip
    for route in routes:
        route.update((patch or {}).get(str(route["name"]), {}))
    routes = [{"upstream": upstream, **route} for route in extra or []] + routes
    return in_process_document(routes, **top)


@dataclass
class Bought:
    macaroon: str
    preimage: str
    challenge: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"L402 {self.macaroon}:{self.preimage}"}


@dataclass
class InProcess:
    server: GatewayServer
    invoices: MemoryInvoiceSource
    store: Store
    seen: Seen
    clock: FakeClock
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.public_port}{path}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    async def challenge(self, path: str, method: str = "GET", **kw: Any) -> dict[str, Any]:
        async with self.session.request(method, self.url(path), **kw) as r:
            assert r.status == 402, (r.status, await r.text())
            body: dict[str, Any] = await r.json()
            return body

    async def buy(self, path: str, method: str = "GET") -> Bought:
        """A challenge, 'paid' by looking up the fake invoice's preimage."""
        body = await self.challenge(path, method)
        preimage = self.invoices.preimage_for(bytes.fromhex(body["payment_hash"]))
        assert hashlib.sha256(preimage).hexdigest() == body["payment_hash"]
        return Bought(body["macaroon"], preimage.hex(), body)

    async def metric(self, name: str, **labels: str) -> float:
        async with self.session.get(self.admin + "/metrics") as r:
            text = await r.text()
        from tests.gateway.harness import metric

        return metric(text, name, **labels)

    async def raw(self, data: bytes, read: int = 65536, timeout: float = 5.0) -> bytes:
        """Send raw bytes on a fresh connection; return everything read until close/timeout."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.public_port)
        try:
            writer.write(data)
            await writer.drain()
            chunks = []
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await reader.read(read)
                    if not chunk:
                        break
                    chunks.append(chunk)
            return b"".join(chunks)
        finally:
            writer.close()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def json_of(raw: bytes) -> Any:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


@asynccontextmanager
async def in_process(
    tmp_path: Path,
    patch: dict[str, dict[str, Any]] | None = None,
    extra: list[dict[str, Any]] | None = None,
    **top: Any,
) -> AsyncIterator[InProcess]:
    upstream = web.AppRunner(upstream_app(), shutdown_timeout=0.5, handler_cancellation=True)
    await upstream.setup()
    await web.TCPSite(upstream, "127.0.0.1", 0).start()
    app = upstream.app
    assert app is not None
    port = upstream.addresses[0][1]
    path = tmp_path / "routes.yaml"
    doc = document(f"http://127.0.0.1:{port}", patch, extra, **top)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(path, check_files=False)
    invoices = MemoryInvoiceSource()
    store = await open_store(str(doc["store"]["url"]))
    clock = FakeClock()
    server = GatewayServer(
        config,
        store=store,
        backend=cast(Backend, invoices),
        clock=clock,
        shutdown_timeout=2.0,
        follow_settlements=False,  # the fake has no SubscribeInvoices; tests/gateway cover it
    )
    await server.start()
    session = aiohttp.ClientSession()
    try:
        yield InProcess(server, invoices, store, app[SEEN], clock, session)
    finally:
        app[SEEN].hold.set()
        await session.close()
        await server.stop()
        await store.close()
        await upstream.cleanup()
