"""An operator closes Payment-scheme sessions a buyer opened, on regtest: through the admin API
(the running seller's close and refund payer) and with `l402-gateway sessions close --via
store` (the same close path, a refund payer of the command's own). Both refunds reach the
buyer's node; the buyer's next request is refused; nothing shown names a secret.

Real LND on both sides, real SQLite, our buyer code (gateway.buyer) as the client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.buyer import LndPayer, SpendPolicy
from gateway.buyer.session import LndReturnInvoices, PaymentSession
from gateway.lightning.lnd import LndClient
from gateway.lightning.types import InvoiceState
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from tests.gateway.harness import Gateway, Upstream, routes_document, write_config
from tests.ops.support import bearer, cli, write_secret

pytestmark = pytest.mark.regtest
PRICE = 10  # premium's price in sats
MULTIPLIER = 5
PREMIUM = "/ep212/premium-signal"


@pytest.fixture
def routes_config(regtest: Descriptor, upstream: Upstream, tmp_path: Path) -> Path:
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    document["lnd"]["refund_macaroon"] = regtest.seller.payer_macaroon
    document["payment"] = {
        "realm": "regtest.example",
        "sessions": {"enabled": True, "deposit_multiplier": MULTIPLIER},
    }
    document["admin"] = {"token_file": str(write_secret(tmp_path / "admin.token"))}
    for route in document["routes"]:
        if route["name"] == "premium":
            route["schemes"] = ["l402", "payment"]
    return write_config(tmp_path / "routes.yaml", document)


class Returns(LndReturnInvoices):
    def __init__(self, client: LndClient) -> None:
        super().__init__(client)
        self.created: list[str] = []

    async def create_return_invoice(self, expiry_seconds: int, memo: str) -> str:
        invoice = await super().create_return_invoice(expiry_seconds, memo)
        self.created.append(invoice)
        return invoice


async def opened(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession, served: int
) -> tuple[PaymentSession, Returns]:
    returns = Returns(buyer_admin)
    policy = SpendPolicy(max_spend_msats=500_000, allowed_hosts=["127.0.0.1"],
                         expected_network="bcrt", max_deposit_msats=250_000)  # fmt: skip
    mpp = PaymentSession(session, LndPayer(buyer_admin), returns, policy, gateway.url(PREMIUM),
                         host="127.0.0.1", request_id="operator-close")  # fmt: skip
    assert (await mpp.open()).status == 200
    for _ in range(served):
        assert (await mpp.request()).status == 200
    return mpp, returns


async def refund_reached(buyer_admin: LndClient, return_invoice: str, sats: int) -> str:
    """The return invoice is settled for exactly `sats`; its payment hash (hex)."""
    decoded = await buyer_admin.decode_pay_req(return_invoice)
    invoice = await buyer_admin.lookup_invoice(decoded.payment_hash)
    assert invoice.state is InvoiceState.SETTLED
    assert invoice.amt_paid_msat == sats * 1000
    return decoded.payment_hash.hex()


def no_secrets(text: str, mpp: PaymentSession, returns: Returns) -> None:
    preimage = mpp._preimage
    assert preimage is not None
    assert preimage.hex() not in text
    for invoice in returns.created:
        assert invoice[:40] not in text


async def test_an_operator_closes_through_the_api_and_the_refund_reaches_the_buyer(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    mpp, returns = await opened(gateway, buyer_admin, session, served=2)
    assert mpp.session_id is not None
    url = f"{gateway.admin}/admin/sessions/{mpp.session_id}"
    async with session.get(url, headers=bearer()) as r:
        shown: dict[str, Any] = await r.json()
    assert shown["session"]["status"] == "open"
    assert shown["session"]["spent_msat"] == 2 * PRICE * 1000

    async with session.post(url + "/close", headers=bearer()) as r:
        text = await r.text()
        assert r.status == 200, text
    body = json.loads(text)
    owed = MULTIPLIER * PRICE - 2 * PRICE
    assert (body["closed"], body["refund_status"]) == (True, "succeeded")
    closed = body["session"]
    assert (closed["status"], closed["close_reason"]) == ("closed", "admin")
    assert (closed["refund_msat"], closed["refund_state"]) == (owed * 1000, "succeeded")
    (return_invoice,) = returns.created
    assert closed["return_payment_hash"] == await refund_reached(buyer_admin, return_invoice, owed)
    no_secrets(text, mpp, returns)

    refused = await mpp.request()  # the buyer does not know yet: refused, nothing served
    assert refused.status == 402
    assert refused.json()["type"].endswith("/lightning/session-closed")
    assert await gateway.metric("l402_sessions_closed_total", route="premium",
                                reason="admin") == 1  # fmt: skip
    assert await gateway.metric("l402_session_refunds_total", route="premium",
                                result="succeeded") == 1  # fmt: skip
    assert await gateway.metric("l402_session_refunded_msats_total", route="premium") == (
        owed * 1000
    )


async def test_sessions_close_on_the_store_pays_with_its_own_refund_payer(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    mpp, returns = await opened(gateway, buyer_admin, session, served=1)
    assert mpp.session_id is not None
    config = ("--config", str(gateway.config_path))
    listed = await cli("sessions", "list", *config, "--status", "open", "--via", "api")
    assert listed.code == 0, listed.err
    assert mpp.session_id in listed.out

    closed = await cli("sessions", "close", mpp.session_id, *config, "--via", "store")
    assert closed.code == 0, closed.out + closed.err
    owed = MULTIPLIER * PRICE - PRICE
    assert f"closed via the store; refund {owed * 1000} msat: succeeded" in closed.out
    (return_invoice,) = returns.created
    await refund_reached(buyer_admin, return_invoice, owed)
    shown = await cli("sessions", "show", mpp.session_id, *config, "--via", "api", "--json")
    session_json = json.loads(shown.out)["session"]
    assert (session_json["refund_state"], session_json["close_reason"]) == ("succeeded", "admin")
    again = await cli("sessions", "close", mpp.session_id, *config, "--via", "api")
    assert again.code == 1  # closed already: nothing more is paid
    for ran in (listed, closed, shown, again):
        no_secrets(ran.out + ran.err, mpp, returns)
    assert (await mpp.request()).status == 402
