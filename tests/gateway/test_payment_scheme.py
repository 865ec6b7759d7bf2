"""The Payment scheme (MPP) sold by our gateway on regtest: charge and session, end to end.

Real LND on both sides, real SQLite, our own buyer code (gateway.buyer) as the
client: the same code the Aperture tests (tests/aperture/test_mpp_regtest.py)
run against Aperture v0.5.0. Where Aperture falls short (a charge bought many
times, no refund), ours is asserted to do what the drafts ask.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mpp import Credential as PympCredential
from mpp.client.transport import Mpp
from mpp.methods import Method
from mpp.runtime import ClientMethod, CredentialParams
from pydantic import BaseModel, ConfigDict

from gateway.buyer import CredentialCache, L402Client, LndPayer, SpendPolicy
from gateway.buyer.client import Outcome
from gateway.buyer.errors import SessionError
from gateway.buyer.offers import Scheme
from gateway.buyer.session import LndReturnInvoices, PaymentSession
from gateway.demo.upstream import make_signal_app
from gateway.jobs.sessions import SessionJanitor
from gateway.lightning.lnd import LndClient
from gateway.lightning.types import InvoiceState
from gateway.observability.metrics import GatewayMetrics
from gateway.payment import b64url, wwwauth
from gateway.payment.challenge import ChallengeParams
from gateway.payment.credential import Credential, format_authorization
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.keys import HANDLER_KEY, STORE_KEY
from tests.gateway.harness import Gateway, Upstream, routes_document, write_config

pytestmark = pytest.mark.regtest
PRICE = 10  # premium's price in sats (tests/gateway/harness.PRICES_SATS)
MULTIPLIER = 5
PREMIUM = "/ep212/premium-signal"
PAY_ONLY = "/pay-only"
LLM = "/v1/chat/completions"
LIMITED = "/limited"


@pytest.fixture
async def llm() -> AsyncIterator[str]:
    """The OpenAI-compatible demo upstream (gateway.demo.llm), streaming on request."""
    runner = web.AppRunner(make_signal_app(), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
def routes_config(regtest: Descriptor, upstream: Upstream, llm: str, tmp_path: Path) -> Path:
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    document["lnd"]["refund_macaroon"] = regtest.seller.payer_macaroon
    document["payment"] = {
        "realm": "regtest.example",
        "sessions": {"enabled": True, "deposit_multiplier": MULTIPLIER},
    }
    for route in document["routes"]:
        if route["name"] == "premium":
            route["schemes"] = ["l402", "payment"]
    document["routes"] += [
        {"name": "payonly", "path": f"^{PAY_ONLY}$", "upstream": f"{upstream.url}/echo",
         "price_sats": 3, "schemes": ["payment"]},
        {"name": "llm", "path": f"^{LLM}$", "upstream": llm, "price_sats": PRICE,
         "methods": ["POST"], "schemes": ["payment"]},
        {"name": "limited", "path": f"^{LIMITED}$", "upstream": f"{upstream.url}/echo",
         "price_sats": 3, "schemes": ["payment"],
         "rate_limits": [{"requests": 1, "per": "1h"}]},
    ]  # fmt: skip
    return write_config(tmp_path / "routes.yaml", document)


def policy(**kw: Any) -> SpendPolicy:
    return SpendPolicy(
        max_spend_msats=500_000, allowed_hosts=["127.0.0.1"], expected_network="bcrt", **kw
    )


async def offers(session: aiohttp.ClientSession, url: str) -> list[ChallengeParams]:
    async with session.get(url) as resp:
        assert resp.status == 402
        return wwwauth.parse_challenges(resp.headers.getall("WWW-Authenticate"))


async def test_a_402_offers_l402_and_both_intents_with_a_problem_body(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    async with session.get(gateway.url(PREMIUM)) as resp:
        body = json.loads(await resp.read())
        values = resp.headers.getall("WWW-Authenticate")
        assert resp.status == 402
        assert resp.headers["Content-Type"] == "application/problem+json"
    assert [v.split(" ", 1)[0] for v in values] == ["LSAT", "L402", "Payment", "Payment"]
    charge, deposit = wwwauth.parse_challenges(values)
    assert (charge.intent, deposit.intent, charge.realm) == ("charge", "session", "regtest.example")
    assert body["type"] == "https://paymentauth.org/problems/payment-required"
    assert body["challengeId"] == charge.id
    assert body["invoice"].startswith("lnbcrt")  # the L402 members ride along
    assert charge.request_object()["amount"] == str(PRICE)
    assert deposit.request_object()["depositAmount"] == str(MULTIPLIER * PRICE)
    assert charge.opaque_object() == {"route": "premium"}
    # A route that sells only the Payment scheme mints no macaroon.
    async with session.get(gateway.url(PAY_ONLY)) as resp:
        await resp.read()
        assert [v.split(" ", 1)[0] for v in resp.headers.getall("WWW-Authenticate")] == [
            "Payment", "Payment",
        ]  # fmt: skip


async def test_a_charge_buys_exactly_one_answer_with_a_receipt(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    payer = LndPayer(buyer_admin)
    client = L402Client(session, payer, policy(), CredentialCache(),
                        preference=(Scheme.PAYMENT, Scheme.L402))  # fmt: skip
    result = await client.fetch("GET", gateway.url(PREMIUM))
    assert (result.outcome, result.status, result.scheme) == (Outcome.PAID, 200, Scheme.PAYMENT)
    assert result.receipt is not None
    assert result.payment is not None
    assert result.receipt.reference == result.payment.payment_id
    assert result.headers["Cache-Control"] == "private"
    # The same credential again: consumed (unlike Aperture), a fresh challenge and a problem.
    (charge, _) = await offers(session, gateway.url(PREMIUM))
    details = charge.request_object()["methodDetails"]
    assert isinstance(details, dict)
    paid = await buyer_admin.pay_invoice(str(details["invoice"]), fee_limit_msat=10_000)
    header = format_authorization(Credential(charge, {"preimage": paid.preimage.hex()}))
    answers = []
    for _ in range(2):
        async with session.get(gateway.url(PREMIUM), headers={"Authorization": header}) as resp:
            answers.append((resp.status, resp.headers.get("Content-Type"), await resp.read()))
    assert answers[0][0] == 200
    status, content_type, body = answers[1]
    assert (status, content_type) == (402, "application/problem+json")
    assert json.loads(body)["type"].endswith("/lightning/unknown-challenge")
    # Bound to its route: the charge cannot buy the pay-only route either.
    async with session.get(gateway.url(PAY_ONLY), headers={"Authorization": header}) as resp:
        assert resp.status == 402
        await resp.read()
    assert await gateway.metric("l402_scheme_paid_requests_total", route="premium",
                                scheme="charge") == 2  # fmt: skip


async def test_fifty_parallel_uses_of_one_charge_buy_one_answer(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    (charge, _) = await offers(session, gateway.url(PREMIUM))
    details = charge.request_object()["methodDetails"]
    assert isinstance(details, dict)
    paid = await buyer_admin.pay_invoice(str(details["invoice"]), fee_limit_msat=10_000)
    header = format_authorization(Credential(charge, {"preimage": paid.preimage.hex()}))

    async def use() -> int:
        async with session.get(gateway.url(PREMIUM), headers={"Authorization": header}) as r:
            await r.read()
            return r.status

    statuses = await asyncio.gather(*(use() for _ in range(50)))
    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 402, 409}


class RecordingReturnInvoices(LndReturnInvoices):
    def __init__(self, client: LndClient) -> None:
        super().__init__(client)
        self.created: list[str] = []

    async def create_return_invoice(self, expiry_seconds: int, memo: str) -> str:
        invoice = await super().create_return_invoice(expiry_seconds, memo)
        self.created.append(invoice)
        return invoice


async def test_a_session_opens_serves_tops_up_closes_and_refunds_to_the_buyer(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    payer = LndPayer(buyer_admin)
    returns = RecordingReturnInvoices(buyer_admin)
    mpp = PaymentSession(
        session, payer, returns, policy(max_deposit_msats=250_000), gateway.url(PREMIUM),
        host="127.0.0.1", request_id="seller-session",
    )  # fmt: skip
    opened = await mpp.open()
    assert opened.status == 200
    assert json.loads(opened.body)["status"] == "open"
    assert opened.receipt is not None
    assert opened.receipt.reference == mpp.session_id
    served = [(await mpp.request()).status for _ in range(3)]
    assert served == [200, 200, 200]
    assert (await mpp.top_up()).status == 200
    closed = await mpp.close()
    assert closed.status == 200
    owed = 2 * MULTIPLIER * PRICE - 3 * PRICE
    body = json.loads(closed.body)
    assert body == {"status": "closed", "refundSats": owed, "refundStatus": "succeeded"}
    receipt = json.loads(b64url.decode(closed.headers["Payment-Receipt"]))
    assert (receipt["refundSats"], receipt["refundStatus"]) == (owed, "succeeded")
    (return_invoice,) = returns.created
    decoded = await buyer_admin.decode_pay_req(return_invoice)
    invoice = await buyer_admin.lookup_invoice(decoded.payment_hash)
    assert invoice.state is InvoiceState.SETTLED  # the refund reached the buyer's node
    assert invoice.amt_paid_msat == owed * 1000
    with pytest.raises(SessionError):
        await mpp.request()
    assert await gateway.metric("l402_session_refunds_total", route="premium",
                                result="succeeded") == 1  # fmt: skip
    assert await gateway.metric("l402_session_refunded_msats_total", route="premium") == (
        owed * 1000
    )


async def test_a_streamed_answer_is_billed_per_event_and_pauses_for_a_top_up(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    mpp = PaymentSession(
        session, LndPayer(buyer_admin), LndReturnInvoices(buyer_admin),
        policy(max_deposit_msats=250_000), gateway.url(LLM), host="127.0.0.1",
        request_id="seller-stream", method="POST",
    )  # fmt: skip
    await mpp.open()
    tokens = 6  # role chunk + 6 words + finish chunk = 8 billable events; the deposit buys 5
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens,
            "stream": True}  # fmt: skip
    names = [event.name async for event in mpp.stream("POST", json=body)]
    assert names.count("payment-need-topup") == 1
    assert names.index("payment-need-topup") == 5  # after the five events the deposit paid
    data_events = [n for n in names if n == "message"]
    assert len(data_events) == tokens + 3  # 8 billable + the [DONE] marker
    assert names[-2:] == ["payment-receipt", "message"]  # the receipt, then [DONE]
    receipt = json.loads(mpp.stream_receipts[0])
    assert (receipt["units"], receipt["spent"]) == (tokens + 2, (tokens + 2) * PRICE)
    closed = json.loads((await mpp.close()).body)
    deposited = 2 * MULTIPLIER * PRICE
    assert closed["refundSats"] == deposited - (tokens + 2) * PRICE


async def test_an_idle_session_is_closed_and_refunded_by_the_janitor(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    returns = RecordingReturnInvoices(buyer_admin)
    mpp = PaymentSession(
        session, LndPayer(buyer_admin), returns, policy(max_deposit_msats=250_000),
        gateway.url(PREMIUM), host="127.0.0.1", request_id="idle",
    )  # fmt: skip
    await mpp.open()
    assert (await mpp.request()).status == 200
    app = gateway.server.app
    services = app[HANDLER_KEY].paywall.services
    assert services.payment is not None
    config = gateway.server.config.payment.sessions
    janitor = SessionJanitor(
        app[STORE_KEY],
        services.payment.closer,
        services.payment.refunds,
        config,
        GatewayMetrics(),
        gateway.clock,
    )
    assert await janitor.once() == 0  # not idle yet
    gateway.clock.advance(config.idle_timeout_seconds + 1)
    assert await janitor.once() == 1
    (invoice,) = returns.created
    decoded = await buyer_admin.decode_pay_req(invoice)
    paid = await buyer_admin.lookup_invoice(decoded.payment_hash)
    assert paid.amt_paid_msat == (MULTIPLIER * PRICE - PRICE) * 1000
    refused = await mpp.request()
    assert refused.status == 402
    assert json.loads(refused.body)["type"].endswith("/lightning/session-closed")


async def test_tempo_pympp_buys_a_charge_from_our_gateway(
    gateway: Gateway, buyer_admin: LndClient
) -> None:
    """A third-party client: pympp parses our 402 with its own parser and pays with a
    small lightning/charge method written here against pympp's method contract."""
    paid: list[str] = []

    async def create_credential(params: CredentialParams) -> str:
        challenge = params.challenge
        invoice = challenge.request["methodDetails"]["invoice"]
        payment = await buyer_admin.pay_invoice(invoice, fee_limit_msat=10_000)
        paid.append(invoice)
        echo = challenge.to_echo()
        return PympCredential(echo, {"preimage": payment.preimage.hex()}).to_authorization()

    method = Method(name="lightning", intent="charge", request_model=_Loose, payload_model=_Loose)
    client_method = ClientMethod(method=method, create_credential=create_credential)
    async with Mpp(methods=[client_method]) as mpp:
        response = await mpp.fetch(gateway.url(PAY_ONLY))
    assert response.status_code == 200
    assert len(paid) == 1
    receipt = json.loads(b64url.decode(response.headers["Payment-Receipt"]))
    assert receipt["status"] == "success"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


async def test_the_buyer_cli_runs_a_streamed_session_and_writes_its_books(
    gateway: Gateway, regtest: Descriptor, tmp_path: Path
) -> None:
    """`l402-buyer session` as an agent runs it: open, streamed requests (a top-up when the
    seller asks), close; summary.json says what was deposited, debited and refunded."""
    env = {
        **os.environ,
        "L402_BUYER_LND_HOST": regtest.buyer.rpc,
        "L402_BUYER_LND_TLS_CERT": regtest.buyer.tls_cert,
        "L402_BUYER_LND_MACAROON": regtest.buyer.admin_macaroon,
    }
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
                       "stream": True})  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.buyer", "session", gateway.url(LLM),
        "--max-msats", "20000", "--max-deposit-msats", "200000", "--method", "POST",
        "--data", body, "--requests", "1", "--stream", "--network", "bcrt",
        "--artifact-dir", str(tmp_path / "out"), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert json.loads(out) == summary
    assert (summary["scheme"], summary["intent"]) == ("payment", "session")
    assert [d["kind"] for d in summary["deposits"]] == ["open", "topUp"]
    deposited = 2 * MULTIPLIER * PRICE
    assert summary["depositedSats"] == deposited
    assert summary["debits"]["debitedSats"] == 8 * PRICE  # 8 billable events
    assert summary["refund"]["refundSats"] == deposited - 8 * PRICE
    assert summary["refund"]["refundStatus"] == "succeeded"
    stages = [json.loads(line)["stage"] for line in
              (tmp_path / "out" / "events.jsonl").read_text().splitlines()]  # fmt: skip
    assert "session.stream" in stages
    text = (tmp_path / "out" / "events.jsonl").read_text() + out.decode() + err.decode()
    assert '"preimage"' not in text


async def test_rate_limits_apply_per_session_and_a_refused_request_is_not_debited(
    gateway: Gateway, buyer_admin: LndClient, session: aiohttp.ClientSession
) -> None:
    """`rate_limits` key a Payment session by its id, as an L402 token by its token id: the
    second request within the hour is refused 429 and its reserved unit given back."""
    mpp = PaymentSession(
        session, LndPayer(buyer_admin), LndReturnInvoices(buyer_admin),
        policy(max_deposit_msats=250_000), gateway.url(LIMITED),
        host="127.0.0.1", request_id="limited-session",
    )  # fmt: skip
    await mpp.open()
    first, second = await mpp.request(), await mpp.request()
    assert (first.status, second.status) == (200, 429)
    assert second.headers["Retry-After"].isdigit()
    closed = await mpp.close()
    deposit = MULTIPLIER * 3
    assert json.loads(closed.body)["refundSats"] == deposit - 3  # one unit debited, not two
    assert await gateway.metric("l402_requests_rate_limited_total", route="limited") == 1
