"""The documented limiter, cache and lock are the ones the running gateway uses.

The shared challenge limiter once existed, was tested as a class, and was never
built: every process used its own buckets. These tests look at what a started
gateway (and an embedded seller) actually holds, on SQLite and PostgreSQL, so a
documented piece that is built but not wired fails here, and show the
behaviour it documents: two gateways on one database give a client one
allowance. LND's invoice role is the named fake `MemoryInvoiceSource`;
tests/gateway/test_workers_rate_limit.py shows the same with `serve --workers 2`
on real LND.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import aiohttp
import yaml

from gateway.config import load_config
from gateway.embed import L402, PricedRoute
from gateway.lightning.backend import Backend
from gateway.paywall.ratelimit import SharedChallengeLimiter
from gateway.paywall.services import Services
from gateway.paywall.verifier import Authenticator
from gateway.server.keys import HANDLER_KEY, STORE_KEY
from gateway.server.serve import GatewayServer
from tests.embed.conftest import dummy_lnd
from tests.support.documents import in_process_document
from tests.support.invoices import MemoryInvoiceSource

BURST = 20  # the default
LIMIT = {"per_minute": 1, "burst": BURST}  # no refill within a test


def _gateway(tmp_path: Path, store_url: str, tag: str) -> GatewayServer:
    routes = [{"name": "p", "path": "^/p$", "upstream": "http://127.0.0.1:9", "price_sats": 1}]
    doc = in_process_document(
        routes, store={"url": store_url, "prune_after_days": 0}, challenge_rate_limit=LIMIT
    )
    path = tmp_path / f"routes-{tag}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return GatewayServer(
        load_config(path, check_files=False),
        backend=cast(Backend, MemoryInvoiceSource()),
        follow_settlements=False,
        shutdown_timeout=1.0,
    )


def _assert_wired(services: Services, store: object, verified_cache_size: int) -> None:
    limiter = services.issuer.limiter
    assert isinstance(limiter, SharedChallengeLimiter)
    assert limiter._store is store  # the store the gateway serves from, not another
    assert (limiter.fallback.per_minute, limiter.fallback.burst) == (1, BURST)
    assert isinstance(services.auth, Authenticator)
    assert services.auth.cache.size == verified_cache_size
    assert id(services.leases._leases) == id(store)  # the same store object


async def test_the_running_gateway_uses_the_shared_limiter_on_its_store(
    tmp_path: Path, store_url: str
) -> None:
    first, second = _gateway(tmp_path, store_url, "a"), _gateway(tmp_path, store_url, "b")
    await first.start()
    try:
        await second.start()
        try:
            for server in (first, second):
                paywall = server.app[HANDLER_KEY].paywall
                _assert_wired(
                    paywall.services, server.app[STORE_KEY], server.config.verified_cache_size
                )
            statuses = []
            async with aiohttp.ClientSession() as session:
                for i in range(BURST + 10):  # alternately through each gateway
                    server = (first, second)[i % 2]
                    url = f"http://127.0.0.1:{server.public_port}/p"
                    async with session.get(url) as r:
                        statuses.append(r.status)
            # One allowance for the client across both gateways: 20, not 2 x 20.
            assert statuses[:BURST] == [402] * BURST
            assert statuses[BURST:] == [429] * 10
        finally:
            await second.stop()
    finally:
        await first.stop()


async def test_the_embedded_seller_uses_the_shared_limiter_on_its_store(
    tmp_path: Path, store_url: str
) -> None:
    seller = L402.from_routes(
        [PricedRoute("p", "^/p$", price_sats=1)],
        lnd=dummy_lnd(tmp_path),
        store_url=store_url,
        options={"challenge_rate_limit": LIMIT, "store": {"prune_after_days": 0}},
        lightning=cast(Backend, MemoryInvoiceSource()),
        follow_settlements=False,
    )
    await seller.start()
    try:
        services = seller.gate.paywall.services
        limiter = services.issuer.limiter
        assert isinstance(limiter, SharedChallengeLimiter)
        _assert_wired(services, limiter._store, seller.config.verified_cache_size)
        assert id(services.leases._leases) == id(limiter._store)
    finally:
        await seller.stop()
