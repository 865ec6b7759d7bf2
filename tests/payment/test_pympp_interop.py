"""Interop with a third-party client: Tempo's `pympp` (PyPI, pinned in the dev extra).

pympp parses the challenges our core emits (its own RFC 9110 parser, its own
base64url and JSON), recomputes their HMAC ids with its own RFC 8785 library,
and builds credentials with its own encoder; our core parses and verifies
them. pympp ships no Lightning method, so the test writes one (`lightning`
/ `charge` and `session`) against pympp's method contract.

Paying: `FakeWallet` (named as a fake) "pays" a BOLT11 invoice by looking up
the preimage the test seller kept for its payment hash, as the buyer tests'
FakePayer does; real invoices, signed, decoded by pympp's side. Real payment
over Lightning against a real seller is tests/aperture/test_mpp_regtest.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import bolt11
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mpp import Challenge as PympChallenge
from mpp import ChallengeEcho as PympEcho
from mpp import Credential as PympCredential
from mpp.client.transport import Mpp
from mpp.methods import Method
from mpp.runtime import ClientMethod, CredentialParams
from pydantic import BaseModel, ConfigDict

from gateway.payment import problems, receipts, sessions, wwwauth
from gateway.payment.credential import find_credential
from gateway.payment.errors import PaymentAuthError, Reason
from gateway.payment.payloads import BearerPayload, OpenPayload
from gateway.payment.verify import session_payload, verify_charge, verify_open, verify_session_owner

from .conftest import REALM, Issuer


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class FakeWallet:
    """A FAKE Lightning wallet: pays by asking the test seller for the preimage."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.paid: list[str] = []

    def pay(self, invoice: str) -> str:
        decoded = bolt11.decode(invoice)  # signature checked, as a wallet would
        self.paid.append(invoice)
        return self.issuer.preimages[bytes.fromhex(decoded.payment_hash)].hex()


def lightning_charge(wallet: FakeWallet) -> ClientMethod:
    """A pympp client method for `lightning`/`charge`, built on pympp's own core."""

    async def create_credential(params: CredentialParams) -> str:
        challenge = params.challenge
        details = challenge.request["methodDetails"]
        preimage = wallet.pay(details["invoice"])
        credential = PympCredential(challenge=challenge.to_echo(), payload={"preimage": preimage})
        return credential.to_authorization()

    method = Method(name="lightning", intent="charge", request_model=_Loose, payload_model=_Loose)
    return ClientMethod(method=method, create_credential=create_credential)


def seller_app(issuer: Issuer) -> web.Application:
    """A test seller assembled from our core: 402 + challenge, then verify and receipt."""
    consumed: set[str] = set()

    async def weather(request: web.Request) -> web.Response:
        fresh, _ = issuer.charge(10)
        challenge_header = {"WWW-Authenticate": wwwauth.format_challenge(fresh)}
        try:
            cred = find_credential(request.headers.getall("Authorization", []))
            if cred is None:
                body = problems.payment_required(fresh.id).body()
                return web.Response(status=402, body=body, headers=challenge_header)
            verified = verify_charge(issuer.binding, cred, now=time.time(), expected_amount_sats=10)
            if verified.challenge_id in consumed:
                raise PaymentAuthError(Reason.UNKNOWN_CHALLENGE, "already used")
        except PaymentAuthError as exc:
            method = cred.challenge.method if cred else None
            intent = cred.challenge.intent if cred else None
            problem = problems.problem_for(exc, method=method, intent=intent, challenge_id=fresh.id)
            return web.Response(
                status=problem.status, body=problem.body(), headers=challenge_header,
                content_type="application/problem+json",
            )  # fmt: skip
        consumed.add(verified.challenge_id)
        receipt = receipts.Receipt(
            "lightning", verified.payment_hash.hex(), "2026-03-10T21:00:00Z",
            challenge_id=verified.challenge_id,
        )  # fmt: skip
        return web.json_response(
            {"temperature": 72}, headers={"Payment-Receipt": receipts.format_receipt(receipt)}
        )

    app = web.Application()
    app.router.add_get("/weather", weather)
    return app


@pytest.fixture
async def seller(issuer: Issuer) -> AsyncIterator[TestServer]:
    server = TestServer(seller_app(issuer), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_pympp_pays_a_charge_our_core_issued_and_verifies(
    issuer: Issuer, seller: TestServer
) -> None:
    wallet = FakeWallet(issuer)
    url = f"http://127.0.0.1:{seller.port}/weather"
    async with Mpp(methods=[lightning_charge(wallet)]) as mpp:
        response = await mpp.fetch(url)
    assert response.status_code == 200
    assert response.json() == {"temperature": 72}
    assert len(wallet.paid) == 1
    receipt = receipts.parse_receipt(response.headers["Payment-Receipt"])
    assert receipt.reference == bolt11.decode(wallet.paid[0]).payment_hash


async def test_a_replayed_pympp_credential_is_refused(issuer: Issuer, seller: TestServer) -> None:
    wallet = FakeWallet(issuer)
    url = f"http://127.0.0.1:{seller.port}/weather"
    async with Mpp(methods=[lightning_charge(wallet)]) as mpp:
        assert (await mpp.fetch(url)).status_code == 200
    async with httpx.AsyncClient() as plain:
        first = await plain.get(url)
        challenge = PympChallenge.from_www_authenticate(first.headers["www-authenticate"])
        preimage = wallet.pay(challenge.request["methodDetails"]["invoice"])
        header = PympCredential(challenge.to_echo(), {"preimage": preimage}).to_authorization()
        assert (await plain.get(url, headers={"Authorization": header})).status_code == 200
        replay = await plain.get(url, headers={"Authorization": header})
    assert replay.status_code == 402
    problem = problems.read_problem(replay.content)
    assert problem is not None
    assert problem.known is problems.ProblemType.LN_UNKNOWN_CHALLENGE
    assert "www-authenticate" in replay.headers  # a fresh challenge, as the spec requires


def test_pympp_recomputes_our_challenge_ids(issuer: Issuer) -> None:
    """Its parser and its RFC 8785 library arrive at our HMAC: byte-identical JCS."""
    secret = "k" * 40
    issuer.secret = secret.encode()
    for params in (issuer.charge(10)[0], issuer.session(3)[0]):
        parsed = PympChallenge.from_www_authenticate(wwwauth.format_challenge(params))
        assert parsed.id == params.id
        assert parsed.request_b64 == params.request
        assert parsed.verify(secret, REALM)
        assert not parsed.verify(secret, "other.realm")


def pympp_session_credential(header: str, payload: dict[str, Any]) -> str:
    challenge = PympChallenge.from_www_authenticate(header)
    echo: PympEcho = challenge.to_echo()
    return PympCredential(challenge=echo, payload=payload).to_authorization()


def test_pympp_session_credentials_verify(issuer: Issuer) -> None:
    wallet = FakeWallet(issuer)
    params, _ = issuer.session(2)
    header = wwwauth.format_challenge(params)
    request = PympChallenge.from_www_authenticate(header).request
    preimage = wallet.pay(request["depositInvoice"])
    return_invoice, _ = issuer.invoice(None, expiry=86_400)
    open_cred = find_credential([pympp_session_credential(header, {
        "action": "open", "preimage": preimage, "returnInvoice": return_invoice,
    })])  # fmt: skip
    assert open_cred is not None
    payload = session_payload(open_cred)
    assert isinstance(payload, OpenPayload)
    opened = verify_open(issuer.binding, open_cred, payload, now=time.time())
    assert opened.session_id.hex() == request["paymentHash"]
    assert opened.deposit_sats == int(request["depositAmount"]) == 40

    state = sessions.opened(opened.session_id, opened.deposit_sats, return_invoice, time.time())
    bearer_header = wwwauth.format_challenge(issuer.session(2)[0])
    bearer = find_credential([pympp_session_credential(bearer_header, {
        "action": "bearer", "sessionId": opened.session_id.hex(), "preimage": preimage,
    })])  # fmt: skip
    assert bearer is not None
    bearer_payload = session_payload(bearer)
    assert isinstance(bearer_payload, BearerPayload)
    owner = verify_session_owner(issuer.binding, bearer, bearer_payload, state, now=time.time())
    assert owner.session_id == opened.session_id
