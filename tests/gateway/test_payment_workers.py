"""The Payment scheme across worker processes, on SQLite and on PostgreSQL.

`l402-gateway serve --workers 2` as operators run it, each request on a new
connection so the kernel spreads them over both workers: one charge
credential presented 50 times at once buys exactly one answer, and 20
simultaneous closes of one session pay exactly one refund.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.buyer import SpendPolicy
from gateway.buyer.payers import LndPayer
from gateway.buyer.session import LndReturnInvoices, PaymentSession
from gateway.lightning.lnd import LndClient
from gateway.lightning.types import InvoiceState
from gateway.payment import wwwauth
from gateway.payment.credential import Credential, format_authorization
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import ManagedProcess, free_port, wait_until
from tests.gateway.harness import Upstream

pytestmark = pytest.mark.regtest
PRICE = 7
MULTIPLIER = 5
PATH = "/paid"


@dataclass(frozen=True)
class Served:
    public: str
    admin: str


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback)
            return int(r.status) == 200
    except OSError:
        return False


@pytest.fixture
def served(
    regtest: Descriptor, upstream: Upstream, store_url: str, tmp_path: Path
) -> Iterator[Served]:
    public, admin = free_port(), free_port()
    document: dict[str, Any] = {
        "listen": {"public": f"127.0.0.1:{public}", "admin": f"127.0.0.1:{admin}"},
        "lightning": {
            "backend": "lnd",
            "host": regtest.seller.rpc,
            "tls_cert": regtest.seller.tls_cert,
            "macaroon": regtest.seller.invoice_macaroon,
            "refund_macaroon": regtest.seller.payer_macaroon,
        },
        "store": {"url": store_url},
        "challenge_rate_limit": {"per_minute": 10_000, "burst": 10_000},
        "payment": {"sessions": {"enabled": True, "deposit_multiplier": MULTIPLIER}},
        "routes": [
            {"name": "paid", "path": f"^{PATH}$", "upstream": f"{upstream.url}/echo",
             "price_sats": PRICE, "schemes": ["payment"]},
        ],
    }  # fmt: skip
    config = tmp_path / "routes.yaml"
    config.write_text(yaml.safe_dump(document))
    gateway = ManagedProcess(
        "gateway",
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"],
        tmp_path / "gateway.log",
        detached=False,
    )
    try:
        wait_until("the gateway", lambda: _ready(f"http://127.0.0.1:{admin}/readyz"), 30)
        yield Served(f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}")
    finally:
        gateway.stop()


@pytest.fixture
async def fresh() -> AsyncIterator[aiohttp.ClientSession]:
    """A new connection per request: both workers get some."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        yield session


async def test_fifty_parallel_uses_of_one_charge_across_workers_buy_one_answer(
    served: Served, fresh: aiohttp.ClientSession, buyer_admin: LndClient
) -> None:
    async with fresh.get(served.public + PATH) as resp:
        assert resp.status == 402
        offers = wwwauth.parse_challenges(resp.headers.getall("WWW-Authenticate"))
    charge = next(o for o in offers if o.intent == "charge")
    details = charge.request_object()["methodDetails"]
    assert isinstance(details, dict)
    paid = await buyer_admin.pay_invoice(str(details["invoice"]), fee_limit_msat=10_000)
    header = format_authorization(Credential(charge, {"preimage": paid.preimage.hex()}))

    async def use() -> int:
        async with fresh.get(served.public + PATH, headers={"Authorization": header}) as r:
            await r.read()
            return r.status

    statuses = await asyncio.gather(*(use() for _ in range(50)))
    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 402, 409}


async def test_twenty_parallel_closes_across_workers_pay_one_refund(
    served: Served, fresh: aiohttp.ClientSession, buyer_admin: LndClient
) -> None:
    returns: list[str] = []

    class Recording(LndReturnInvoices):
        async def create_return_invoice(self, expiry_seconds: int, memo: str) -> str:
            returns.append(await super().create_return_invoice(expiry_seconds, memo))
            return returns[-1]

    policy = SpendPolicy(max_spend_msats=100_000, allowed_hosts=["127.0.0.1"],
                         expected_network="bcrt", max_deposit_msats=100_000)  # fmt: skip
    mpp = PaymentSession(fresh, LndPayer(buyer_admin), Recording(buyer_admin), policy,
                         served.public + PATH, host="127.0.0.1", request_id="closes")  # fmt: skip
    await mpp.open()
    assert (await mpp.request()).status == 200
    closes = await asyncio.gather(*(mpp.close() for _ in range(20)), return_exceptions=True)
    succeeded = [c for c in closes if not isinstance(c, BaseException)]
    assert succeeded  # at least the winner's answer (retries may be replayed)
    owed = MULTIPLIER * PRICE - PRICE
    (invoice,) = returns
    decoded = await buyer_admin.decode_pay_req(invoice)
    paid = await buyer_admin.lookup_invoice(decoded.payment_hash)
    assert paid.state is InvoiceState.SETTLED
    assert paid.amt_paid_msat == owed * 1000  # paid once, for exactly what was owed
    async with fresh.get(served.admin + "/metrics") as resp:
        text = await resp.text()
    attempts = sorted(line for line in text.splitlines()
                      if line.startswith("l402_session_refunds_total{"))  # fmt: skip
    assert attempts == [
        'l402_session_refunds_total{result="failed",route="paid"} 0.0',
        'l402_session_refunds_total{result="succeeded",route="paid"} 1.0',
    ]
