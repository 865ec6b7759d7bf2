"""A real Prometheus scrapes a real gateway while a real buyer pays on regtest.

What Prometheus reports (paid requests, revenue, settlements, consumed tokens)
must equal what the buyer actually paid, as recorded on the buyer's side.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from gateway.buyer.cache import CredentialCache
from gateway.buyer.client import L402Client
from gateway.buyer.payers import LndPayer
from gateway.buyer.policy import SpendPolicy
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.rehearsal.stack import PER_REQUEST_PATH, PER_REQUEST_ROUTE, ROUTE_A_PATH, SellerStack
from tests.support.prometheus import PrometheusServer, sample_value

pytestmark = [pytest.mark.regtest, pytest.mark.prometheus]

ROUTE_A = "ep212-premium-signal"
PER_REQUEST = PER_REQUEST_ROUTE


async def test_prometheus_sees_exactly_what_was_paid(
    regtest: Descriptor, buyer_admin: LndClient, tmp_path: Path
) -> None:
    stack = SellerStack.start(regtest, tmp_path / "seller")
    try:
        target = stack.admin_url.removeprefix("http://")
        async with PrometheusServer(target) as prom:
            paid_msats: Counter[str] = Counter()
            settled: Counter[str] = Counter()
            requests: Counter[str] = Counter()
            payer = LndPayer(buyer_admin, fee_limit_msat=10_000, timeout_seconds=30)
            policy = SpendPolicy(max_spend_msats=100_000, expected_network="bcrt")
            async with aiohttp.ClientSession() as session:
                client = L402Client(session, payer, policy, CredentialCache())
                plan = [
                    ("GET", ROUTE_A_PATH, ROUTE_A, False, None),  # pays
                    ("GET", ROUTE_A_PATH, ROUTE_A, False, None),  # cached: no payment
                    ("GET", ROUTE_A_PATH, ROUTE_A, True, None),  # force_refresh: pays again
                    ("POST", PER_REQUEST_PATH, PER_REQUEST, False, {"prompt": "one"}),
                    ("POST", PER_REQUEST_PATH, PER_REQUEST, False, {"prompt": "two"}),
                ]
                for method, path, route, refresh, body in plan:
                    result = await client.fetch(
                        method, stack.public_url + path, json=body, force_refresh=refresh
                    )
                    assert result.status == 200, result
                    requests[route] += 1
                    if result.payment is not None:
                        paid_msats[route] += result.payment.amount_msats
                        settled[route] += 1
            assert payer.calls == 4
            assert paid_msats == {ROUTE_A: 20_000, PER_REQUEST: 84_000}

            await prom.wait_for_scrape_async()

            async def value(promql: str, want: float) -> float:
                results = await prom.wait_for_async(
                    promql, lambda r: bool(r) and float(r[0]["value"][1]) == want, timeout=30
                )
                got = sample_value(results)
                print(f"prometheus: {promql} = {got:g} (buyer side: {want:g})")  # -s shows it
                return got

            for route in (ROUTE_A, PER_REQUEST):
                sel = f'{{route="{route}"}}'
                assert (
                    await value(f"l402_revenue_msats_total{sel}", paid_msats[route])
                    == (paid_msats[route])
                )
                assert (
                    await value(f"l402_settled_invoices_total{sel}", settled[route])
                    == (settled[route])
                )
                assert (
                    await value(f"l402_paid_requests_total{sel}", requests[route])
                    == (requests[route])
                )
            assert await value(f'l402_tokens_consumed_total{{route="{PER_REQUEST}"}}', 2) == 2
            assert await value("sum(l402_revenue_msats_total)", 104_000) == 104_000
            assert await value("l402_lnd_up", 1) == 1
    finally:
        stack.stop()
