"""Pure verification of lightning charge and session credentials, and the state rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from gateway.payment import challenge, lightning, sessions
from gateway.payment.challenge import ChallengeParams
from gateway.payment.credential import Credential, format_authorization, parse_authorization
from gateway.payment.errors import PaymentAuthError, Reason
from gateway.payment.payloads import (
    BearerPayload,
    ChargePayload,
    ClosePayload,
    OpenPayload,
    TopUpPayload,
)
from gateway.payment.receipts import RefundStatus
from gateway.payment.verify import (
    Binding,
    content_digest,
    session_payload,
    verify_charge,
    verify_open,
    verify_session_owner,
    verify_top_up,
)

from .conftest import REALM, Issuer

P = TypeVar("P", OpenPayload, BearerPayload, TopUpPayload, ClosePayload)


def action(cred: Credential, kind: type[P]) -> P:
    """The session payload of `cred`, which must be of `kind`."""
    payload = session_payload(cred)
    assert isinstance(payload, kind)
    return payload


def soon(seconds: float = 300) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def wire(cred: Credential) -> Credential:
    """Through the header and back, as a seller receives it."""
    return parse_authorization(format_authorization(cred))


def refused(reason: Reason) -> pytest.RaisesExc[PaymentAuthError]:
    return pytest.raises(PaymentAuthError, match=f"^{reason.value}:")


def test_charge_accepts_the_preimage_of_the_challenged_invoice(issuer: Issuer) -> None:
    params, preimage = issuer.charge(10)
    verified = verify_charge(
        issuer.binding, wire(Credential(params, ChargePayload(preimage).to_json())),
        now=time.time(), expected_amount_sats=10,
    )  # fmt: skip
    assert verified.challenge_id == params.id
    assert verified.amount_sats == 10
    details = params.request_object()["methodDetails"]
    assert isinstance(details, dict)
    assert verified.payment_hash.hex() == details["paymentHash"]
    assert verified.expires_at == pytest.approx(time.time() + 600, abs=5)


def test_charge_without_the_convenience_hash_reads_it_from_the_invoice(issuer: Issuer) -> None:
    invoice, payment_hash = issuer.invoice(7)
    request = lightning.ChargeRequest(7, invoice, None, "regtest").to_json()
    params = challenge.issue(issuer.secret, realm=REALM, method="lightning", intent="charge",
                             request=request, expires=soon())  # fmt: skip
    cred = Credential(params, ChargePayload(issuer.preimages[payment_hash]).to_json())
    assert verify_charge(issuer.binding, cred, now=time.time()).payment_hash == payment_hash


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p, pre: (p, bytes(32)), Reason.INVALID_PREIMAGE),
        (lambda p, pre: (replace(p, realm="other.test"), pre), Reason.UNKNOWN_CHALLENGE),
        (lambda p, pre: (replace(p, id=p.id[:-2] + "AA"), pre), Reason.UNKNOWN_CHALLENGE),
        (
            lambda p, pre: (replace(p, expires="2031-01-01T00:00:00Z"), pre),
            Reason.UNKNOWN_CHALLENGE,
        ),
        (lambda p, pre: (replace(p, intent="session"), pre), Reason.METHOD_UNSUPPORTED),
        (lambda p, pre: (replace(p, method="lnurl"), pre), Reason.METHOD_UNSUPPORTED),
    ],
)
def test_charge_refusals(
    issuer: Issuer,
    mutate: Callable[[ChallengeParams, bytes], tuple[ChallengeParams, bytes]],
    reason: Reason,
) -> None:
    params, preimage = issuer.charge(10)
    params, preimage = mutate(params, preimage)
    with refused(reason):
        verify_charge(
            issuer.binding, Credential(params, ChargePayload(preimage).to_json()), now=time.time()
        )


def test_charge_expiry_is_the_earlier_of_expires_and_the_invoice(issuer: Issuer) -> None:
    params, preimage = issuer.charge(10, expires_in=60)
    cred = Credential(params, ChargePayload(preimage).to_json())
    with refused(Reason.CHALLENGE_EXPIRED):
        verify_charge(issuer.binding, cred, now=time.time() + 61)
    params, preimage = issuer.charge(10, expires_in=600, invoice_expiry=30)
    cred = Credential(params, ChargePayload(preimage).to_json())
    with refused(Reason.INVOICE_EXPIRED):
        verify_charge(issuer.binding, cred, now=time.time() + 31)


def test_a_cheap_challenge_does_not_buy_an_expensive_route(issuer: Issuer) -> None:
    params, preimage = issuer.charge(1)
    cred = Credential(params, ChargePayload(preimage).to_json())
    with refused(Reason.PAYMENT_INSUFFICIENT):
        verify_charge(issuer.binding, cred, now=time.time(), expected_amount_sats=250)


def test_route_bound_in_opaque(issuer: Issuer) -> None:
    invoice, payment_hash = issuer.invoice(5)
    request = lightning.ChargeRequest(5, invoice, payment_hash, "regtest").to_json()
    params = challenge.issue(issuer.secret, realm=REALM, method="lightning", intent="charge",
                             request=request, opaque={"route": "a"},
                             expires=soon(60))  # fmt: skip
    cred = Credential(params, ChargePayload(issuer.preimages[payment_hash]).to_json())
    verify_charge(issuer.binding, cred, now=time.time(), expected_opaque={"route": "a"})
    with refused(Reason.UNKNOWN_CHALLENGE):
        verify_charge(issuer.binding, cred, now=time.time(), expected_opaque={"route": "b"})


def test_body_digest_binding(issuer: Issuer) -> None:
    invoice, payment_hash = issuer.invoice(5)
    request = lightning.ChargeRequest(5, invoice, payment_hash, "regtest").to_json()
    digest = content_digest(b'{"q": 1}')
    assert (
        digest
        == "sha-256=:"
        + __import__("base64")
        .b64encode(__import__("hashlib").sha256(b'{"q": 1}').digest())
        .decode()
        + ":"
    )
    params = challenge.issue(issuer.secret, realm=REALM, method="lightning", intent="charge",
                             request=request, digest=digest,
                             expires=soon(60))  # fmt: skip
    cred = Credential(params, ChargePayload(issuer.preimages[payment_hash]).to_json())
    verify_charge(issuer.binding, cred, now=time.time(), body_digest=digest)
    with refused(Reason.VERIFICATION_FAILED):
        verify_charge(issuer.binding, cred, now=time.time(), body_digest=content_digest(b"{}"))


def test_a_request_that_lies_about_its_invoice_is_refused(issuer: Issuer) -> None:
    params, preimage = issuer.charge(10, amount="11")  # amount != invoice amount
    with refused(Reason.VERIFICATION_FAILED):
        verify_charge(
            issuer.binding, Credential(params, ChargePayload(preimage).to_json()), now=time.time()
        )


def test_rotated_secret_still_verifies_until_retired(issuer: Issuer) -> None:
    params, preimage = issuer.charge(10)
    cred = Credential(params, ChargePayload(preimage).to_json())
    rotated = Binding(REALM, b"n" * 32, previous=(issuer.secret,))
    assert verify_charge(rotated, cred, now=time.time()).amount_sats == 10
    with refused(Reason.UNKNOWN_CHALLENGE):
        verify_charge(Binding(REALM, b"n" * 32), cred, now=time.time())


@pytest.mark.parametrize("preimage", ["AB" * 32, "ab" * 31, "ab" * 33, 42, None])
def test_preimage_must_be_64_lowercase_hex(issuer: Issuer, preimage: object) -> None:
    params, _ = issuer.charge(10)
    with refused(Reason.MALFORMED_CREDENTIAL):
        verify_charge(issuer.binding, Credential(params, {"preimage": preimage}), now=time.time())


def open_session(issuer: Issuer, unit: int = 2) -> tuple[sessions.SessionState, bytes]:
    params, preimage = issuer.session(unit)
    return_invoice, _ = issuer.invoice(None, expiry=30 * 86400)
    cred = wire(Credential(params, OpenPayload(preimage, return_invoice).to_json()))
    payload = session_payload(cred)
    assert isinstance(payload, OpenPayload)
    opened = verify_open(issuer.binding, cred, payload, now=time.time(), expected_unit_sats=unit,
                         min_return_validity=600)  # fmt: skip
    assert opened.deposit_sats == unit * 20
    assert opened.unit_sats == unit
    return sessions.opened(
        opened.session_id, opened.deposit_sats, return_invoice, time.time()
    ), preimage


def test_session_lifecycle(issuer: Issuer) -> None:
    state, preimage = open_session(issuer)
    bearer_params, _ = issuer.session(2)  # any fresh session challenge of ours
    bearer = Credential(bearer_params, BearerPayload(state.session_id, preimage).to_json())
    owner = verify_session_owner(
        issuer.binding, bearer, action(bearer, BearerPayload), state, now=time.time()
    )
    state = sessions.debit(owner, 2, time.time())
    assert state.balance_sats == 38
    top_params, top_preimage = issuer.session(2)
    top = Credential(top_params, TopUpPayload(state.session_id, top_preimage).to_json())
    credited = verify_top_up(issuer.binding, top, action(top, TopUpPayload), state, now=time.time())
    assert credited.top_up_sats == 40
    state = sessions.credit(state, credited.top_up_sats, time.time())
    close = Credential(bearer_params, ClosePayload(state.session_id, preimage).to_json())
    verify_session_owner(issuer.binding, close, action(close, ClosePayload), state, now=time.time())
    state, refund = sessions.closed(state)
    assert refund == 78
    assert sessions.close_body(refund, sessions.refund_status(refund, False)) == {
        "status": "closed", "refundSats": 78, "refundStatus": "failed",
    }  # fmt: skip
    with refused(Reason.SESSION_CLOSED):
        verify_session_owner(
            issuer.binding, close, action(close, ClosePayload), state, now=time.time()
        )
    with refused(Reason.SESSION_CLOSED):
        sessions.credit(state, 1, time.time())


def test_a_session_deposit_is_no_top_up_of_its_own_session(issuer: Issuer) -> None:
    params, preimage = issuer.session(2)
    return_invoice, _ = issuer.invoice(None)
    open_cred = Credential(params, OpenPayload(preimage, return_invoice).to_json())
    opened = verify_open(issuer.binding, open_cred, action(open_cred, OpenPayload), now=time.time())
    state = sessions.opened(opened.session_id, opened.deposit_sats, return_invoice, time.time())
    replay = Credential(params, TopUpPayload(state.session_id, preimage).to_json())
    with refused(Reason.UNKNOWN_CHALLENGE):
        verify_top_up(issuer.binding, replay, action(replay, TopUpPayload), state, now=time.time())


@pytest.mark.parametrize(
    ("sats", "network", "expiry", "detail"),
    [(5, "bcrt", 3600, "amount"), (None, "bc", 3600, "network"), (None, "bcrt", 60, "soon")],
)
def test_return_invoice_rules(
    issuer: Issuer, sats: int | None, network: str, expiry: int, detail: str
) -> None:
    params, preimage = issuer.session(2)
    return_invoice, _ = issuer.invoice(sats, network=network, expiry=expiry)
    cred = Credential(params, OpenPayload(preimage, return_invoice).to_json())
    with pytest.raises(PaymentAuthError, match=detail) as error:
        verify_open(
            issuer.binding,
            cred,
            action(cred, OpenPayload),
            now=time.time(),
            min_return_validity=600,
        )
    assert error.value.reason is Reason.INVALID_RETURN_INVOICE


def test_bearer_refusals(issuer: Issuer) -> None:
    state, preimage = open_session(issuer)
    params, _ = issuer.session(2)
    wrong = Credential(params, BearerPayload(state.session_id, bytes(32)).to_json())
    with refused(Reason.INVALID_PREIMAGE):
        verify_session_owner(
            issuer.binding, wrong, action(wrong, BearerPayload), state, now=time.time()
        )
    unknown = Credential(params, BearerPayload(bytes(32), preimage).to_json())
    with refused(Reason.SESSION_NOT_FOUND):
        verify_session_owner(
            issuer.binding, unknown, action(unknown, BearerPayload), None, now=time.time()
        )
    with refused(Reason.SESSION_NOT_FOUND):
        verify_session_owner(
            issuer.binding, unknown, action(unknown, BearerPayload), state, now=time.time()
        )
    expired = Credential(params, BearerPayload(state.session_id, preimage).to_json())
    with refused(Reason.CHALLENGE_EXPIRED):
        verify_session_owner(
            issuer.binding, expired, action(expired, BearerPayload), state, now=time.time() + 601
        )


def test_balance_rules() -> None:
    state = sessions.opened(b"\x01" * 32, 10, "lnbcrt1x", 100.0)
    state = sessions.debit(state, 4, 101.0)
    state = sessions.debit(state, 6, 102.0)
    with refused(Reason.INSUFFICIENT_BALANCE):
        sessions.debit(state, 1, 103.0)
    assert sessions.need_top_up(state, 1).to_json() == {
        "sessionId": "01" * 32, "balanceSpent": 10, "balanceRequired": 1,
    }  # fmt: skip
    assert not sessions.is_idle(state, 401.0, 300)
    assert sessions.is_idle(state, 402.0, 300)
    closed, refund = sessions.closed(state)
    assert refund == 0
    assert sessions.refund_status(refund, None) is RefundStatus.SKIPPED
    assert not sessions.is_idle(closed, 10_000.0, 300)
    with pytest.raises(ValueError, match="owed"):
        sessions.refund_status(5, None)
