"""Our buyer against the real Aperture v0.5.0 speaking the Payment scheme, on regtest.

Aperture runs with `enablempp`, `enablesessions` and a service with
`authscheme: l402+mpp`; our buyer (gateway.buyer) pays on the regtest buyer
LND. What Aperture does on the wire is asserted as observed, including what
it gets wrong (docs/payment-scheme.md, "Aperture v0.5.0"):
- a 402 carries four challenges: LSAT, L402, Payment charge, Payment session;
- a charge credential is accepted again and again until its challenge
  expires (no single use);
- `sessiondepositmultiplier` in the YAML file is overwritten by the flag
  default (20) when Aperture re-parses its command line;
- every session action's receipt is the CHARGE authenticator's (reference
  "", no refundSats/refundStatus): the close reports nothing about the
  refund; the refund itself fails (lnd 0.21 no longer serves
  SendPaymentSync) and only Aperture's log says so; the return invoice stays
  unpaid.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.buyer import CredentialCache, L402Client, LndPayer, SpendPolicy
from gateway.buyer.client import Outcome
from gateway.buyer.errors import SessionError
from gateway.buyer.offers import Scheme
from gateway.buyer.session import LndReturnInvoices, PaymentSession
from gateway.lightning.lnd import LndClient
from gateway.lightning.types import InvoiceState
from gateway.payment import b64url, wwwauth
from gateway.payment.credential import Credential, format_authorization
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import pid_alive
from tests.aperture.conftest import PREMIUM_PATH
from tests.aperture.mpp_harness import REALM, MppApertureProcess
from tests.support.aperture import ApertureService

pytestmark = pytest.mark.regtest
PRICE = 10


@pytest.fixture
async def mpp_aperture(
    aperture_binary: Path, regtest: Descriptor, signal_upstream: str
) -> AsyncIterator[MppApertureProcess]:
    service = ApertureService(
        "premium", signal_upstream, f"^{PREMIUM_PATH}$", PRICE, timeout=3600,
        extra={"authscheme": "l402+mpp"},
    )  # fmt: skip
    # multiplier 5 in the YAML: Aperture v0.5.0 ignores it (see module docstring).
    process = MppApertureProcess(aperture_binary, regtest.seller, [service], multiplier=5)
    process.spawn()
    await asyncio.to_thread(process.wait_ready)
    yield process
    pid = process.pid
    await asyncio.to_thread(process.remove)
    assert not pid_alive(pid)


class RecordingReturnInvoices(LndReturnInvoices):
    """Our LND's return invoices, remembered so the test can look them up afterwards."""

    def __init__(self, client: LndClient) -> None:
        super().__init__(client)
        self.created: list[str] = []

    async def create_return_invoice(self, expiry_seconds: int, memo: str) -> str:
        invoice = await super().create_return_invoice(expiry_seconds, memo)
        self.created.append(invoice)
        return invoice


def policy(**kw: Any) -> SpendPolicy:
    return SpendPolicy(
        max_spend_msats=100_000, allowed_hosts=["127.0.0.1"], expected_network="bcrt", **kw
    )


async def test_a_402_offers_l402_and_both_payment_intents(
    mpp_aperture: MppApertureProcess, buyer_session: aiohttp.ClientSession
) -> None:
    async with buyer_session.get(mpp_aperture.url + PREMIUM_PATH) as resp:
        body = await resp.read()
        values = resp.headers.getall("WWW-Authenticate")
        assert resp.status == 402
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.headers["Cache-Control"] == "no-store"
    assert [v.split(" ", 1)[0] for v in values] == ["LSAT", "L402", "Payment", "Payment"]
    assert json.loads(body) == {
        "type": "https://paymentauth.org/problems/payment-required", "title": "Payment Required",
        "status": 402, "detail": "Payment required for access.",
    }  # fmt: skip
    charge, session = wwwauth.parse_challenges(values)
    assert (charge.intent, session.intent) == ("charge", "session")
    assert charge.realm == session.realm == REALM
    assert charge.expires is not None
    expires = calendar.timegm(time.strptime(charge.expires, "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(expires - time.time() - 900) < 120  # 15 minutes
    request = session.request_object()
    assert request["depositAmount"] == str(20 * PRICE)  # the YAML's multiplier 5 was overwritten
    assert request["idleTimeout"] == "300"
    assert set(request) == {"amount", "currency", "depositAmount", "depositInvoice",
                            "idleTimeout", "paymentHash"}  # fmt: skip


async def test_our_buyer_buys_a_charge_and_aperture_accepts_it_twice(
    mpp_aperture: MppApertureProcess, buyer_admin: LndClient, buyer_session: aiohttp.ClientSession
) -> None:
    payer = LndPayer(buyer_admin)
    client = L402Client(buyer_session, payer, policy(), CredentialCache(),
                        preference=(Scheme.PAYMENT, Scheme.L402))  # fmt: skip
    url = mpp_aperture.url + PREMIUM_PATH
    result = await client.fetch("GET", url)
    assert (result.outcome, result.status, result.scheme) == (Outcome.PAID, 200, Scheme.PAYMENT)
    assert result.quote_msats == PRICE * 1000
    assert json.loads(result.body)["route"] == PREMIUM_PATH
    assert result.headers["Cache-Control"] == "private"
    assert result.receipt is not None
    assert result.payment is not None
    assert result.receipt.reference == result.payment.payment_id  # the invoice's payment hash
    assert result.receipt.challenge_id
    assert payer.calls == 1
    # No cache for Payment charges: the next request pays again.
    again = await client.fetch("GET", url)
    assert (again.outcome, payer.calls) == (Outcome.PAID, 2)
    # Aperture does not consume a charge challenge: the same credential works again.
    async with buyer_session.get(url) as resp:
        offer = next(o for o in wwwauth.parse_challenges(resp.headers.getall("WWW-Authenticate"))
                     if o.intent == "charge")  # fmt: skip
    details = offer.request_object()["methodDetails"]
    assert isinstance(details, dict)
    invoice = details["invoice"]
    paid = await buyer_admin.pay_invoice(invoice, fee_limit_msat=10_000)
    header = format_authorization(Credential(offer, {"preimage": paid.preimage.hex()}))
    statuses = []
    for _ in range(3):
        async with buyer_session.get(url, headers={"Authorization": header}) as resp:
            await resp.read()
            statuses.append(resp.status)
    assert statuses == [200, 200, 200]


async def test_our_buyer_runs_a_session_and_aperture_reports_no_refund(
    mpp_aperture: MppApertureProcess, buyer_admin: LndClient, buyer_session: aiohttp.ClientSession
) -> None:
    payer = LndPayer(buyer_admin)
    returns = RecordingReturnInvoices(buyer_admin)
    events: list[tuple[str, str, dict[str, Any]]] = []
    session = PaymentSession(
        buyer_session, payer, returns, policy(max_deposit_msats=250_000),
        mpp_aperture.url + PREMIUM_PATH, host="127.0.0.1", request_id="mpp-regtest",
        events=lambda stage, outcome, details: events.append((stage, outcome, details)),
    )  # fmt: skip
    opened = await session.open()
    assert opened.status == 200
    assert json.loads(opened.body)["route"] == PREMIUM_PATH  # Aperture forwards the open upstream
    assert opened.receipt is not None
    assert opened.receipt.reference == ""  # Aperture's charge authenticator answers for sessions
    served = [(await session.request()).status for _ in range(3)]
    assert served == [200, 200, 200]
    topped = await session.top_up()
    assert topped.status == 200
    closed = await session.close()
    assert closed.status == 200
    assert closed.receipt is not None
    receipt_doc = json.loads(b64url.decode(closed.headers["Payment-Receipt"]))
    assert set(receipt_doc) == {"status", "method", "timestamp", "reference", "challengeId"}
    assert receipt_doc["reference"] == ""
    summary = session.summary()
    assert summary["sessionId"] == session.session_id
    assert [d["kind"] for d in summary["deposits"]] == ["open", "topUp"]
    assert summary["depositedSats"] == 2 * 20 * PRICE
    assert summary["debits"] == {"requests": 3, "served": 3, "debitedSats": 3 * PRICE, "streams": 0}
    assert summary["refund"]["refundSats"] is None
    assert summary["refund"]["refundStatus"] is None
    assert payer.calls == 2
    # What Aperture did with the refund: one failed attempt, in its log only.
    owed = 2 * 20 * PRICE - 3 * PRICE
    log = await _log_line(mpp_aperture, f"Refund failed for session {session.session_id}")
    assert f"({owed} sats)" in log
    assert "code = Unimplemented desc = unknown method SendPaymentSync" in log
    assert f"Closed session {session.session_id} (refund={owed} sats)" in mpp_aperture.log_tail(400)
    (return_invoice,) = returns.created
    decoded = await buyer_admin.decode_pay_req(return_invoice)
    assert decoded.num_msat == 0
    state = (await buyer_admin.lookup_invoice(decoded.payment_hash)).state
    assert state is InvoiceState.OPEN  # never paid
    # A closed session refuses further actions.
    with pytest.raises(SessionError, match="no_open_session"):
        await session.request()
    assert [(stage, outcome) for stage, outcome, _ in events] == [
        ("session.challenge", "ok"), ("session.open", "paid"), ("session.open", "ok"),
        ("session.bearer", "ok"), ("session.bearer", "ok"), ("session.bearer", "ok"),
        ("session.topUp", "paid"), ("session.topUp", "ok"), ("session.close", "ok"),
    ]  # fmt: skip
    logged = json.dumps([details for _, _, details in events])
    assert return_invoice not in logged
    secret = session._preimage
    assert secret is not None
    assert secret.hex() not in logged  # the deposit preimage (the bearer secret) never logged


async def test_a_deposit_over_the_cap_is_refused_before_paying(
    mpp_aperture: MppApertureProcess, buyer_admin: LndClient, buyer_session: aiohttp.ClientSession
) -> None:
    payer = LndPayer(buyer_admin)
    returns = RecordingReturnInvoices(buyer_admin)
    session = PaymentSession(
        buyer_session, payer, returns, policy(max_deposit_msats=150_000),
        mpp_aperture.url + PREMIUM_PATH, host="127.0.0.1", request_id="mpp-cap",
    )  # fmt: skip
    with pytest.raises(SessionError) as refused:
        await session.open()
    assert refused.value.code == "deposit_over_cap"
    assert payer.calls == 0
    assert returns.created == []  # refused before a return invoice was even created


async def _log_line(process: MppApertureProcess, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for line in process.log_tail(400).splitlines():
            if needle in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in Aperture's log:\n{process.log_tail(40)}")
        await asyncio.sleep(0.2)
