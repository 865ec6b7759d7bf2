"""Freebies and request rate limits on the request path (in process; regtest and two
workers: tests/gateway/test_metered_workers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import InProcess, in_process

EXTRA = [
    {"name": "gift", "path": "^/gift", "price_sats": 2, "freebies": {"per_client": 2}},
    {"name": "limited", "path": "^/limited", "price_sats": 0,
     "rate_limits": [{"requests": 1, "per": "1h", "burst": 2}]},
]  # fmt: skip


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path, extra=EXTRA) as running:
        yield running


async def status(gw: InProcess, path: str) -> int:
    async with gw.session.get(gw.url(path)) as r:
        await r.read()
        return r.status


async def test_a_freebie_not_served_is_given_back(gw: InProcess) -> None:
    # The upstream's 5xx answers are passed on, and each freebie comes back.
    assert [await status(gw, "/gift?status=502") for _ in range(3)] == [502, 502, 502]
    assert [await status(gw, "/gift") for _ in range(3)] == [200, 200, 402]
    assert await gw.metric("l402_freebies_total", route="gift") == 5


async def test_a_free_route_is_rate_limited_per_client(gw: InProcess) -> None:
    assert [await status(gw, "/limited") for _ in range(3)] == [200, 200, 429]
    async with gw.session.get(gw.url("/limited")) as r:
        assert r.status == 429
        body = await r.json()
        assert int(r.headers["Retry-After"]) > 1000  # one token an hour
    assert body["error"] == "request_rate_limited"
    assert await gw.metric("l402_requests_rate_limited_total", route="limited") == 2
