"""Fixtures: a real gateway in front of a real test upstream, selling on the regtest seller.

Function-scoped so every test gets its own upstream, routes.yaml, SQLite store,
metrics registry and FakeClock. The regtest network itself is session-wide.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.config import load_config
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.gateway.harness import (
    STATE_KEY,
    Buy,
    Gateway,
    Upstream,
    buy_with,
    make_test_upstream,
    routes_document,
    write_config,
)
from tests.support.clock import FakeClock


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = make_test_upstream()
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield Upstream(f"http://127.0.0.1:{port}", app[STATE_KEY])
    app[STATE_KEY].hold_release.set()
    await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        yield s


@pytest.fixture
def routes_config(regtest: Descriptor, upstream: Upstream, tmp_path: Path) -> Path:
    """routes.yaml from the regtest descriptor: seller's invoice.macaroon, SQLite in tmp_path."""
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    return write_config(tmp_path / "routes.yaml", document)


@pytest.fixture
async def gateway(
    routes_config: Path,
    clock: FakeClock,
    upstream: Upstream,
    session: aiohttp.ClientSession,
) -> AsyncIterator[Gateway]:
    document = yaml.safe_load(routes_config.read_text())  # noqa: ASYNC240 - tiny local file
    server = GatewayServer(load_config(routes_config), clock=clock)
    await server.start()
    gw = Gateway(server, routes_config, document, clock, upstream, session, [server])
    try:
        yield gw
    finally:
        upstream.state.hold_release.set()
        for running in reversed(gw.running):
            await running.stop()


@pytest.fixture
def buy(buyer_admin: LndClient) -> Buy:
    """`await buy(session, url, method="GET", **kw)`: challenge, pay, credential parts."""
    return functools.partial(buy_with, buyer_admin)
