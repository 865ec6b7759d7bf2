"""Helpers shared by the gateway integration tests (fixtures live in conftest.py).

Everything is real (LND, sockets on 127.0.0.1, SQLite in tmp_path) except the
passing of time: the gateway's wall clock is a `FakeClock` the tests advance.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.demo_upstream import make_signal_app
from gateway.lightning import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.support.bodies import pattern_stream

MiB = 1024 * 1024
BIG_BODY_LIMIT = 64 * MiB
PRICES_SATS = {
    "premium": 10,
    "expensive": 250,
    "textgen": 42,
    "expiring": 5,
    "capability": 3,
    "slow": 1,
    "down": 1,
    "flaky": 7,
    "big": 1,
}
TIP_MSATS = 1_234  # not a whole number of satoshis
VALIDITY_SECONDS = 60
SLOW_TIMEOUT_SECONDS = 1
GENEROUS_RATE = 10_000


class FakeClock:
    """The gateway's wall clock; only moves when a test calls `advance`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() + 0.5 if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- test upstream ---------------------------------------------------------------------


@dataclass
class UpstreamState:
    never: asyncio.Event = field(default_factory=asyncio.Event)  # never set
    slow_entered: asyncio.Event = field(default_factory=asyncio.Event)
    hold_entered: asyncio.Event = field(default_factory=asyncio.Event)
    hold_release: asyncio.Event = field(default_factory=asyncio.Event)
    flaky_fail: bool = True  # /flaky answers 500 while this is set
    flaky_calls: int = 0
    echoed: list[dict[str, Any]] = field(default_factory=list)


STATE_KEY = web.AppKey("test_upstream_state", UpstreamState)


def _auth_count(request: web.Request) -> int:
    return len(request.headers.getall("Authorization", []))


async def _echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    seen = {
        "method": request.method,
        "path": request.path,
        "headers": [[k, v] for k, v in request.headers.items()],
        "size": size,
        "sha256": digest.hexdigest(),
    }
    request.app[STATE_KEY].echoed.append(seen)
    return web.json_response(seen)


async def _slow(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.slow_entered.set()
    await state.never.wait()
    return web.Response(text="unreachable")


async def _hold(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.hold_entered.set()
    await state.hold_release.wait()
    return web.json_response({"ok": True, "held": True})


async def _flaky(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.flaky_calls += 1
    await request.read()
    if state.flaky_fail:
        return web.json_response({"ok": False, "error": "upstream broke"}, status=500)
    return web.json_response({"ok": True, "authorizationHeaders": _auth_count(request)})


async def _stream(request: web.Request) -> web.StreamResponse:
    total = int(request.query["mib"]) * MiB
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    async for chunk in pattern_stream(total):
        await response.write(chunk)
    await response.write_eof()
    return response


def make_test_upstream() -> web.Application:
    """The demo signal app plus test-only endpoints."""
    app = make_signal_app()
    app[STATE_KEY] = UpstreamState()
    app.router.add_get("/slow", _slow)
    app.router.add_get("/hold", _hold)
    app.router.add_route("*", "/flaky", _flaky)
    app.router.add_get("/stream", _stream)
    app.router.add_route("*", "/echo/{tail:.*}", _echo)
    return app


@dataclass
class Upstream:
    url: str
    state: UpstreamState


# -- configuration ---------------------------------------------------------------------


def routes_document(
    regtest: Descriptor, upstream_url: str, tmp_path: Path, closed_port: int
) -> dict[str, Any]:
    """routes.yaml as a dict; tests change it and `write_config` it again for reloads."""
    u = upstream_url

    def paid(name: str, path: str, target: str = u, **extra: Any) -> dict[str, Any]:
        return {"name": name, "path": path, "upstream": target, "price_sats": PRICES_SATS[name]} | (
            extra
        )

    return {
        "listen": {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"},
        "lnd": {
            "host": regtest.seller.rpc,
            "tls_cert": regtest.seller.tls_cert,
            "macaroon": regtest.seller.invoice_macaroon,
        },
        "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
        # Every test's unpaid requests come from 127.0.0.1: a limit no test reaches
        # (the limiter still runs); test_rate_limit.py sets a small one.
        "challenge_rate_limit": {"per_minute": GENEROUS_RATE, "burst": GENEROUS_RATE},
        "routes": [
            paid("premium", "^/ep212/premium-signal$"),
            paid("expensive", "^/ep212/expensive-signal$"),
            paid(
                "textgen", "^/api/l402/text-generation$", methods=["POST"], token_mode="per-request"
            ),
            paid("expiring", "^/expiring$", f"{u}/echo", token_validity_seconds=VALIDITY_SECONDS),
            paid(
                "capability",
                "^/cap$",
                f"{u}/echo",
                capabilities=["read", "write"],
                required_capability="write",
            ),
            {"name": "free", "path": "^/free(/.*)?$", "upstream": f"{u}/echo", "price_sats": 0},
            paid("slow", "^/slow$", upstream_timeout_seconds=SLOW_TIMEOUT_SECONDS),
            paid("down", "^/down$", f"http://127.0.0.1:{closed_port}"),
            paid("flaky", "^/flaky$", token_mode="per-request"),
            paid(
                "big",
                "^/(stream|echo/upload)$",
                max_body_bytes=BIG_BODY_LIMIT,
                upstream_timeout_seconds=60,
            ),
            {"name": "hold", "path": "^/hold$", "upstream": u, "price_sats": 0},
            {"name": "tip", "path": "^/tip$", "upstream": f"{u}/echo", "price_msats": TIP_MSATS},
        ],
    }


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def route_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in document["routes"] if r["name"] == name)
    return found


# -- metrics ---------------------------------------------------------------------------


def metric(text: str, sample: str, **labels: str) -> float:
    """Sum of the samples named `sample` whose labels include `labels` (0.0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += float(s.value)
    return total


# -- the running gateway ---------------------------------------------------------------


@dataclass
class Gateway:
    server: GatewayServer
    config_path: Path
    document: dict[str, Any]
    clock: FakeClock
    upstream: Upstream
    session: aiohttp.ClientSession
    running: list[GatewayServer] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.public_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def store_path(self) -> Path:
        return Path(self.document["store"]["url"].removeprefix("sqlite:///"))

    async def start_new(self) -> GatewayServer:
        """Another GatewayServer process-equivalent on the same config and store."""
        server = GatewayServer(load_config(self.config_path), clock=self.clock)
        await server.start()
        self.running.append(server)
        self.server = server
        return server

    async def stop(self, server: GatewayServer | None = None) -> None:
        server = server or self.server
        if server in self.running:
            self.running.remove(server)
            await server.stop()

    async def restart(self) -> GatewayServer:
        await self.stop()
        return await self.start_new()

    async def metrics(self) -> str:
        async with self.session.get(self.admin + "/metrics") as r:
            assert r.status == 200
            return await r.text()

    async def metric(self, sample: str, **labels: str) -> float:
        return metric(await self.metrics(), sample, **labels)

    def token_rows(self) -> int:
        with sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM l402_tokens").fetchone()
        return int(count)


# -- buying ----------------------------------------------------------------------------


@dataclass
class Bought:
    """A paid credential and the challenge it answered."""

    macaroon: str  # standard base64, as the challenge gave it
    preimage: str  # hex
    challenge: dict[str, Any]
    www_authenticate: list[str]
    headers: CIMultiDictProxy[str]

    @property
    def authorization(self) -> str:
        return f"L402 {self.macaroon}:{self.preimage}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": self.authorization}


Buy = Callable[..., Awaitable[Bought]]


async def buy_with(
    payer: LndClient,
    session: aiohttp.ClientSession,
    url: str,
    method: str = "GET",
    **kw: Any,
) -> Bought:
    """Get the challenge, pay its invoice from the buyer node, return the credential parts."""
    async with session.request(method, url, **kw) as r:
        text = await r.text()
        assert r.status == 402, f"{r.status}: {text}"
        challenge = await r.json()
        www = r.headers.getall("WWW-Authenticate")
        headers = r.headers
    preimage = await pay(payer, challenge["invoice"])
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == challenge["payment_hash"]
    return Bought(challenge["macaroon"], preimage, challenge, www, headers)


async def pay(payer: LndClient, invoice: str) -> str:
    payment = await payer.pay_invoice(invoice, fee_limit_msat=10_000, timeout_seconds=30)
    return payment.preimage.hex()


async def poll(
    what: str,
    check: Callable[[], Awaitable[bool]],
    timeout: float = 30.0,
    interval: float = 0.2,
) -> None:
    """Re-check `check` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with session.request(method, url, **kw) as r:
        return r.status, r.headers, await r.read()
