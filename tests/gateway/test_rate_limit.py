"""Per-client rate limiting of challenge minting (`challenge_rate_limit`), on real LND.

The gateway here allows a burst of 3 challenges per client and refills one every
10 s (6 a minute). Time only moves when a test advances the FakeClock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from tests.gateway.harness import (
    Buy,
    Gateway,
    Upstream,
    fetch,
    metric,
    routes_document,
    write_config,
)
from tests.support.clock import FakeClock

pytestmark = pytest.mark.regtest

PREMIUM = "/ep212/premium-signal"
EXPENSIVE = "/ep212/expensive-signal"
BURST = 3
PER_MINUTE = 6  # one token every 10 s
REFILL_SECONDS = 60 // PER_MINUTE


@pytest.fixture
def routes_config(regtest: Descriptor, upstream: Upstream, tmp_path: Path) -> Path:
    """The shared routes, with a small challenge rate limit (overrides conftest's)."""
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    document["challenge_rate_limit"] = {"per_minute": PER_MINUTE, "burst": BURST}
    return write_config(tmp_path / "routes.yaml", document)


@pytest.fixture
def clock() -> FakeClock:
    # Whole seconds, so advancing by whole seconds refills exact fractions of a token.
    return FakeClock(float(int(time.time())))


async def minted(gateway: Gateway) -> tuple[float, float, int]:
    """(challenges issued, AddInvoice calls, token rows): what a challenge costs the node."""
    text = await gateway.metrics()
    return (
        metric(text, "l402_challenges_issued_total"),
        metric(text, "l402_lnd_rpc_latency_seconds_count", method="AddInvoice"),
        gateway.token_rows(),
    )


async def challenge_statuses(
    session: aiohttp.ClientSession, url: str, count: int, **kw: Any
) -> list[int]:
    return [(await fetch(session, "GET", url, **kw))[0] for _ in range(count)]


async def assert_limited(
    session: aiohttp.ClientSession, url: str, retry_after: int, **kw: Any
) -> None:
    async with session.get(url, **kw) as r:
        assert r.status == 429, await r.text()
        assert r.headers["Retry-After"] == str(retry_after)
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers.getall("WWW-Authenticate", []) == []
        body = await r.json()
    assert body["error"] == "rate_limited"
    assert f"retry in {retry_after} s" in body["message"]
    assert set(body) == {"error", "message"}


async def test_over_the_burst_gets_429_and_costs_lnd_nothing(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    assert await challenge_statuses(session, gateway.url(PREMIUM), BURST) == [402] * BURST
    before = await minted(gateway)
    assert before == (BURST, BURST, BURST)

    await assert_limited(session, gateway.url(PREMIUM), REFILL_SECONDS)
    # The limit is per client, not per route; gRPC clients are limited the same way.
    await assert_limited(session, gateway.url(EXPENSIVE), REFILL_SECONDS)
    grpc = {"Content-Type": "application/grpc+proto", "TE": "trailers"}
    async with session.get(gateway.url(PREMIUM), headers=grpc) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == str(REFILL_SECONDS)
        assert "grpc-status" not in r.headers
        assert r.headers.getall("WWW-Authenticate", []) == []

    assert await minted(gateway) == before  # no invoice, no token row
    text = await gateway.metrics()
    assert metric(text, "l402_challenges_rate_limited_total", route="premium") == 2
    assert metric(text, "l402_challenges_rate_limited_total", route="expensive") == 1
    assert metric(text, "l402_challenges_rate_limited_total", route="textgen") == 0  # declared


async def test_the_bucket_refills_as_the_clock_moves(
    gateway: Gateway, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    assert await challenge_statuses(session, gateway.url(PREMIUM), BURST) == [402] * BURST
    await assert_limited(session, gateway.url(PREMIUM), REFILL_SECONDS)
    clock.advance(REFILL_SECONDS - 1)
    await assert_limited(session, gateway.url(PREMIUM), 1)
    clock.advance(1)
    assert await challenge_statuses(session, gateway.url(PREMIUM), 2) == [402, 429]

    clock.advance(3600)  # a long pause refills only up to the burst
    statuses = await challenge_statuses(session, gateway.url(PREMIUM), BURST + 1)
    assert statuses == [402] * BURST + [429]
    issued, add_invoice, rows = await minted(gateway)
    assert issued == add_invoice == rows == 2 * BURST + 1


async def test_a_paid_credential_still_works_while_its_client_is_limited(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url(PREMIUM))  # the first of the burst
    assert await challenge_statuses(session, gateway.url(PREMIUM), BURST) == [402, 402, 429]

    for _ in range(3):
        async with session.get(gateway.url(PREMIUM), headers=bought.auth) as r:
            assert r.status == 200, await r.text()
    assert await gateway.metric("l402_paid_requests_total", route="premium") == 3

    # A refusal that would answer with a fresh challenge mints nothing either:
    # the premium credential on the expensive route (wrong_route) gets 429, not 402.
    before = await minted(gateway)
    await assert_limited(session, gateway.url(EXPENSIVE), REFILL_SECONDS, headers=bought.auth)
    assert await minted(gateway) == before
    text = await gateway.metrics()
    assert metric(text, "l402_auth_failures_total", route="expensive", reason="wrong_route") == 1
    assert metric(text, "l402_challenges_rate_limited_total", route="expensive") == 1


async def test_clients_behind_a_trusted_proxy_are_limited_separately(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    # 127.0.0.1 is a trusted proxy by default: its X-Forwarded-For names the client.
    alice = {"X-Forwarded-For": "203.0.113.7"}
    bob = {"X-Forwarded-For": "198.51.100.20, 203.0.113.99"}  # the rightmost untrusted hop
    url = gateway.url(PREMIUM)
    assert await challenge_statuses(session, url, BURST + 1, headers=alice) == [402] * 3 + [429]
    await assert_limited(session, url, REFILL_SECONDS, headers=alice)

    assert await challenge_statuses(session, url, BURST + 1, headers=bob) == [402] * 3 + [429]
    # The proxy's own address is a client of its own, still untouched.
    assert await challenge_statuses(session, url, 1) == [402]
    assert await challenge_statuses(session, url, 1, headers={"X-Forwarded-For": "10.9.8.7"}) == [
        402
    ]


async def test_reload_applies_a_new_limit(gateway: Gateway, session: aiohttp.ClientSession) -> None:
    url = gateway.url(PREMIUM)
    assert await challenge_statuses(session, url, BURST + 1) == [402] * BURST + [429]

    gateway.document["challenge_rate_limit"] = {"per_minute": 0}
    write_config(gateway.config_path, gateway.document)
    assert gateway.server.reload(gateway.config_path)  # what SIGHUP does
    assert await challenge_statuses(session, url, BURST + 2) == [402] * (BURST + 2)

    gateway.document["challenge_rate_limit"] = {"per_minute": PER_MINUTE, "burst": 1}
    write_config(gateway.config_path, gateway.document)
    assert gateway.server.reload(gateway.config_path)
    assert await challenge_statuses(session, url, 2) == [402, 429]
