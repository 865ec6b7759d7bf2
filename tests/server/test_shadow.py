"""Dry run: a shadow route serves every request free and counts the 402 it would have sent.

An operator trials a price on live traffic: nothing is minted (no invoice, no
token row), the would-be challenge and its price are counted apart from real
ones, and a buyer who does hold a valid credential is still served as paid.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.server.harness import in_process


async def test_a_shadow_route_serves_free_and_counts_the_challenge_it_would_send(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with in_process(tmp_path, patch={"paid": {"shadow": True}}) as gw:
        for _ in range(3):
            async with gw.session.get(gw.url("/paid/x")) as r:
                assert r.status == 200  # forwarded, unpaid
        assert gw.invoices.calls == []  # nothing minted
        assert await gw.metric("l402_shadow_challenges_total", route="paid") == 3
        assert await gw.metric("l402_shadow_price_msats_total", route="paid") == 30_000
        assert await gw.metric("l402_challenges_issued_total", route="paid") == 0
        lines = [r for r in caplog.records if r.name == "gateway.access"]
        assert [getattr(r, "outcome", None) for r in lines] == ["shadow"] * 3
        assert all("10000 msat" in str(getattr(r, "error", "")) for r in lines)
        # Another route is not a dry run.
        async with gw.session.get(gw.url("/cap")) as r:
            assert r.status == 402


async def test_shadow_for_every_route_and_a_route_opting_out(tmp_path: Path) -> None:
    async with in_process(tmp_path, patch={"cap": {"shadow": False}}, shadow=True) as gw:
        async with gw.session.get(gw.url("/paid/x")) as r:
            assert r.status == 200
        async with gw.session.get(gw.url("/cap")) as r:
            assert r.status == 402
        assert await gw.metric("l402_shadow_challenges_total", route="paid") == 1


async def test_a_valid_credential_on_a_shadow_route_is_still_sold(tmp_path: Path) -> None:
    store = {"url": f"sqlite:{tmp_path / 'gateway.db'}"}
    async with in_process(tmp_path, store=store) as gw:
        bought = await gw.buy("/paid/x")
    # The same store and a shadow configuration: a credential bought before still buys.
    async with in_process(tmp_path, store=store, patch={"paid": {"shadow": True}}) as gw:
        headers = {"Authorization": f"L402 {bought.macaroon}:{bought.preimage}"}
        async with gw.session.get(gw.url("/paid/x"), headers=headers) as r:
            assert r.status == 200
        assert await gw.metric("l402_paid_requests_total", route="paid") == 1
        assert await gw.metric("l402_shadow_challenges_total", route="paid") == 0
