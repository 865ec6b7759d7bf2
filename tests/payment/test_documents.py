"""Receipts, problem documents, the stdlib BOLT11 reader, and credential envelopes."""

from __future__ import annotations

import hashlib
import json
import secrets

import bolt11
import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.payment import b64url, problems, receipts
from gateway.payment.bolt11 import read_invoice
from gateway.payment.challenge import ChallengeParams
from gateway.payment.credential import Credential, find_credential, format_authorization
from gateway.payment.errors import PaymentAuthError, Reason
from tests.buyer.fakes import make_invoice

KEY = PrivateKey()


def test_receipt_round_trip_keeps_large_refunds_exact() -> None:
    receipt = receipts.Receipt(
        method="lightning", reference="aa" * 32, timestamp="2026-03-10T21:00:00Z",
        refund_sats=2**63 - 1, refund_status=receipts.RefundStatus.SUCCEEDED,
    )  # fmt: skip
    header = receipts.format_receipt(receipt)
    assert json.loads(b64url.decode(header))["refundSats"] == 2**63 - 1
    assert receipts.parse_receipt(header) == receipt


@pytest.mark.parametrize(
    "doc",
    [
        {"status": "failed", "method": "lightning", "timestamp": "t", "reference": "r"},
        {"status": "success", "method": "lightning", "timestamp": "t"},
        {
            "status": "success",
            "method": "lightning",
            "timestamp": "t",
            "reference": "r",
            "refundSats": -1,
        },
        {
            "status": "success",
            "method": "lightning",
            "timestamp": "t",
            "reference": "r",
            "refundStatus": "done",
        },
    ],
)
def test_bad_receipts_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(PaymentAuthError) as error:
        receipts.parse_receipt(b64url.encode(json.dumps(doc).encode()))
    assert error.value.reason is Reason.MALFORMED_RECEIPT


def test_sse_event_block() -> None:
    event = receipts.BalanceEvent("7f" * 32, 300, 2)
    block = receipts.format_sse_event(receipts.EVENT_NEED_TOPUP, event.to_json())
    name, data, end = block.decode().split("\n", 2)
    assert name == "event: payment-need-topup"
    assert receipts.parse_balance_event(data.removeprefix("data: ")) == event
    assert end == "\n"


@pytest.mark.parametrize(
    ("reason", "method", "intent", "uri", "status"),
    [
        (Reason.INVALID_PREIMAGE, "lightning", "charge", "lightning/invalid-preimage", 402),
        (Reason.CHALLENGE_EXPIRED, "lightning", "charge", "lightning/expired-invoice", 402),
        (Reason.CHALLENGE_EXPIRED, "lightning", "session", "lightning/challenge-expired", 402),
        (Reason.SESSION_CLOSED, "lightning", "session", "lightning/session-closed", 402),
        (
            Reason.INVALID_RETURN_INVOICE,
            "lightning",
            "session",
            "lightning/invalid-return-invoice",
            402,
        ),
        (
            Reason.INSUFFICIENT_BALANCE,
            "lightning",
            "session",
            "lightning/insufficient-balance",
            402,
        ),
        (Reason.UNKNOWN_CHALLENGE, "lightning", "session", "lightning/unknown-challenge", 402),
        (Reason.MALFORMED_CREDENTIAL, None, None, "malformed-credential", 402),
        (Reason.METHOD_UNSUPPORTED, "tempo", "charge", "method-unsupported", 400),
        (Reason.PAYMENT_INSUFFICIENT, "lightning", "charge", "payment-insufficient", 402),
    ],
)
def test_problem_types(
    reason: Reason, method: str | None, intent: str | None, uri: str, status: int
) -> None:
    error = PaymentAuthError(reason, "why")
    problem = problems.problem_for(error, method=method, intent=intent, challenge_id="fresh")
    assert problem.type.uri == problems.BASE + uri
    assert problem.status == status
    doc = json.loads(problem.body())
    assert doc == {"type": problems.BASE + uri, "title": problem.type.title, "status": status,
                   "detail": "why", "challengeId": "fresh"}  # fmt: skip
    read = problems.read_problem(problem.body())
    assert read is not None
    assert read.known is problem.type


def test_client_side_reasons_have_no_problem_type() -> None:
    with pytest.raises(ValueError, match="not a seller-side"):
        problems.problem_type(Reason.NO_CHALLENGE)
    assert problems.read_problem(b"payment required\n") is None


@settings(max_examples=40, deadline=None)
@given(
    st.none() | st.integers(min_value=1, max_value=10**12),
    st.sampled_from(["bc", "tb", "tbs", "bcrt"]),
    st.integers(min_value=1, max_value=10**7),
)
def test_bolt11_reader_agrees_with_the_bolt11_package(
    amount_msat: int | None, network: str, expiry: int
) -> None:
    payment_hash = hashlib.sha256(secrets.token_bytes(32)).digest()
    invoice = make_invoice(KEY, amount_msat, payment_hash, network=network, expiry=expiry)
    oracle = bolt11.decode(invoice)
    facts = read_invoice(invoice)
    assert facts.payment_hash.hex() == oracle.payment_hash
    assert facts.amount_msat == (None if oracle.amount_msat is None else int(oracle.amount_msat))
    assert (facts.timestamp, facts.expiry) == (oracle.date, oracle.expiry)
    names = {"bc": "mainnet", "tb": "testnet", "tbs": "signet", "bcrt": "regtest"}
    assert facts.network == names[network]


def test_bolt11_reader_refuses_a_mangled_invoice() -> None:
    invoice = make_invoice(KEY, 1000, bytes(32))
    flipped = invoice[:-8] + ("q" if invoice[-8] != "q" else "p") + invoice[-7:]
    for bad in (flipped, invoice[:-1], "lnbcrt1qqqq", invoice.replace("lnbcrt", "lnxx")):
        with pytest.raises(PaymentAuthError) as error:
            read_invoice(bad)
        assert error.value.reason is Reason.MALFORMED_INVOICE


def test_several_payment_credentials_are_refused_and_other_schemes_ignored() -> None:
    params = ChallengeParams("i", "r", "lightning", "charge", "cQ")
    header = format_authorization(Credential(params, {"preimage": "00" * 32}))
    assert find_credential(["L402 mac:00", "Bearer x"]) is None
    found = find_credential(["L402 mac:00", header])
    assert found is not None
    assert found.challenge == params
    with pytest.raises(PaymentAuthError) as error:
        find_credential([header, header.replace("Payment", "payment")])
    assert error.value.reason is Reason.MULTIPLE_CREDENTIALS


@pytest.mark.parametrize(
    "doc",
    [
        {
            "challenge": {"id": "", "realm": "r", "method": "m", "intent": "i", "request": "q"},
            "payload": {},
        },
        {
            "challenge": {
                "id": "x",
                "realm": "r",
                "method": "m",
                "intent": "i",
                "request": "q",
                "expires": 5,
            },
            "payload": {},
        },
        {
            "challenge": {"id": "x", "realm": "r", "method": "m", "intent": "i", "request": "q"},
            "payload": [],
        },
        {
            "challenge": {"id": "x", "realm": "r", "method": "m", "intent": "i", "request": "q"},
            "payload": {},
            "source": 1,
        },
        ["not", "an", "object"],
    ],
)
def test_credential_envelope_shape(doc: object) -> None:
    with pytest.raises(PaymentAuthError) as error:
        find_credential(["Payment " + b64url.encode(json.dumps(doc).encode())])
    assert error.value.reason is Reason.MALFORMED_CREDENTIAL


def test_duplicate_json_members_are_refused() -> None:
    text = (
        b'{"challenge":{"id":"a","id":"b","realm":"r","method":"m","intent":"i","request":"q"},'
        b'"payload":{}}'
    )
    with pytest.raises(PaymentAuthError, match="duplicate"):
        find_credential(["Payment " + b64url.encode(text)])
