"""The operator path end to end on real LND: `l402-gateway serve` as a process, a token
bought and paid on regtest, then found, reported and revoked with the CLI through the
running gateway's admin API, and read from the store once the gateway is gone."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from tests.ops.support import bearer, cli
from tests.support.served import PRICE_SATS, Served, served_gateway, stop

pytestmark = pytest.mark.regtest


@pytest.fixture
async def served(regtest: Descriptor, tmp_path: Path) -> AsyncIterator[Served]:
    async with served_gateway(regtest, tmp_path) as gateway:
        yield gateway


async def test_buy_find_report_revoke_with_the_cli(served: Served, buyer_admin: LndClient) -> None:
    url = served.public + "/ep212/premium-signal"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            assert r.status == 402
            challenge = await r.json()
        payment = await buyer_admin.pay_invoice(
            challenge["invoice"], fee_limit_msat=10_000, timeout_seconds=30
        )
        credential = f"L402 {challenge['macaroon']}:{payment.preimage.hex()}"
        async with session.get(url, headers={"Authorization": credential}) as r:
            assert r.status == 200

        # the settlement follower books the payment: the token shows as paid
        deadline = time.monotonic() + 30
        while True:
            listed = await cli("tokens", "list", "--config", str(served.config), "--json")
            assert listed.code == 0, listed.err
            tokens = json.loads(listed.out)["tokens"]
            assert [t["payment_hash"] for t in tokens] == [challenge["payment_hash"]]
            if tokens[0]["state"] == "paid" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        token = tokens[0]
        assert (token["state"], token["amt_paid_msat"]) == ("paid", PRICE_SATS * 1000)

        report = await cli("report", "--config", str(served.config), "--json", "--days", "1")
        assert report.code == 0, report.err
        # the admin API's shape, {"days", "rows"}, wherever the report comes from
        async with session.get(served.admin + "/admin/report?days=1", headers=bearer()) as r:
            api_report = await r.json()
        assert json.loads(report.out) == api_report
        rows = [row for row in json.loads(report.out)["rows"] if row["route"] == "signal"]
        assert sum(row["revenue_msat"] for row in rows) == PRICE_SATS * 1000

        # the upstream's key is not in the CLI's environment: it does not need it
        revoked = await cli("revoke", "-", "--config", str(served.config), stdin=credential)
        assert revoked.code == 0, revoked.err
        assert "revoked via the gateway's admin API" in revoked.out
        assert payment.preimage.hex() not in revoked.out + revoked.err
        async with session.get(url, headers={"Authorization": credential}) as r:
            assert r.status == 402  # at once: the gateway dropped its cached credential
        async with session.get(served.admin + "/admin/routes", headers=bearer()) as r:
            routes = (await r.json())["routes"]
            assert [(x["name"], x["price_msat"]) for x in routes] == [("signal", 21_000)]

    await stop(served.gateway)
    from_store = await cli("report", "--config", str(served.config), "--json", "--days", "1")
    assert from_store.code == 0, from_store.err
    # the same shape and rows from the store (paid-request counts are flushed on shutdown)
    by_store = json.loads(from_store.out)
    assert by_store.keys() == api_report.keys()
    assert by_store["days"] == api_report["days"] == 1

    def booked(body: dict[str, Any]) -> list[tuple[str, str, int, int]]:
        return [
            (r["day"], r["route"], r["settled_invoices"], r["revenue_msat"]) for r in body["rows"]
        ]

    assert booked(by_store) == booked(api_report)
    shown = await cli("tokens", "show", token["token_id"], "--config", str(served.config))
    assert shown.code == 0, shown.err  # no gateway: straight from the store
    assert "state         revoked" in shown.out
