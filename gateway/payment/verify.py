"""Pure verification of Payment credentials for the `lightning` method.

Stateless parts only: the seller supplies the clock, the route's price, the
session it looked up, and afterwards does the stateful parts itself
(consume the challenge id, create/credit/debit/close the session) under its
store's atomicity. Order of checks, first failure wins:

1. method `lightning` and the intent the caller dispatched on (else
   METHOD_UNSUPPORTED);
2. the payload's shape (MALFORMED_CREDENTIAL);
3. binding: realm is ours and the id verifies under our secret, constant
   time (UNKNOWN_CHALLENGE); `expires` present and in the future
   (CHALLENGE_EXPIRED); body digest when the challenge has one;
4. the request object and its invoice agree (VERIFICATION_FAILED), the
   invoice is unexpired (INVOICE_EXPIRED: a challenge's effective expiry is
   the earlier of the two), the price covers the route's (PAYMENT_INSUFFICIENT);
5. sha256(preimage) == payment hash, constant time (INVALID_PREIMAGE).

The HMAC binds realm/method/intent/request/expires/digest/opaque, NOT the
route: a challenge minted for a cheap route verifies on an expensive one of
the same realm unless the seller passes the route's price
(`expected_amount_sats`) or binds the route in `opaque` (`expected_opaque`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.payment import lightning
from gateway.payment.bolt11 import InvoiceFacts, read_invoice
from gateway.payment.challenge import ChallengeParams, is_expired, parse_time, verify_id
from gateway.payment.credential import Credential
from gateway.payment.errors import PaymentAuthError, Reason
from gateway.payment.payloads import (
    BearerPayload,
    ClosePayload,
    OpenPayload,
    SessionPayload,
    TopUpPayload,
    parse_charge_payload,
    parse_session_payload,
)
from gateway.payment.sessions import SessionState, Status


@dataclass(frozen=True)
class Binding:
    """The seller's side of the HMAC binding: its realm and secret(s)."""

    realm: str
    secret: bytes = field(repr=False)
    previous: tuple[bytes, ...] = field(default=(), repr=False)  # retired, still honoured


@dataclass(frozen=True)
class VerifiedCharge:
    challenge_id: str  # consume it atomically with serving (single use)
    payment_hash: bytes  # the receipt's `reference`
    amount_sats: int
    expires_at: float  # keep the consumed id at least until then


@dataclass(frozen=True)
class VerifiedOpen:
    challenge_id: str
    session_id: bytes  # = the deposit invoice's payment hash
    deposit_sats: int  # from the invoice (authoritative)
    unit_sats: int
    return_invoice: str
    expires_at: float


@dataclass(frozen=True)
class VerifiedTopUp:
    challenge_id: str
    session_id: bytes
    payment_hash: bytes  # of the top-up invoice
    top_up_sats: int
    expires_at: float


def content_digest(body: bytes) -> str:
    """RFC 9530 `sha-256=:<base64>:` of a request body (the challenge's `digest`)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def verify_preimage(preimage: bytes, payment_hash: bytes) -> None:
    """sha256(preimage) == payment_hash in constant time, else INVALID_PREIMAGE."""
    if not hmac.compare_digest(hashlib.sha256(preimage).digest(), payment_hash):
        raise PaymentAuthError(Reason.INVALID_PREIMAGE, "sha256(preimage) is not the payment hash")


def check_binding(
    binding: Binding,
    echo: ChallengeParams,
    *,
    intent: str,
    now: float,
    body_digest: str | None = None,
    expected_opaque: Mapping[str, str] | None = None,
) -> None:
    """Steps 1 and 3: method, intent, realm, id, expiry, digest, opaque."""
    if echo.method != lightning.METHOD or echo.intent != intent:
        raise PaymentAuthError(
            Reason.METHOD_UNSUPPORTED, f"expected method lightning, intent {intent}"
        )
    realm_ok = hmac.compare_digest(echo.realm.encode(), binding.realm.encode())
    if not (verify_id(binding.secret, echo, binding.previous) and realm_ok):
        raise PaymentAuthError(
            Reason.UNKNOWN_CHALLENGE, "challenge id does not bind its parameters"
        )
    if echo.expires is None:
        raise PaymentAuthError(Reason.UNKNOWN_CHALLENGE, "challenge carries no expiry")
    if is_expired(echo, now):
        raise PaymentAuthError(Reason.CHALLENGE_EXPIRED, "challenge has expired")
    if echo.digest is not None and (
        body_digest is None or not hmac.compare_digest(echo.digest.encode(), body_digest.encode())
    ):
        raise PaymentAuthError(Reason.VERIFICATION_FAILED, "request body does not match digest")
    if expected_opaque is not None and echo.opaque_object() != dict(expected_opaque):
        raise PaymentAuthError(
            Reason.UNKNOWN_CHALLENGE, "challenge was issued for another resource"
        )


def _invoice(text: str, *, now: float) -> InvoiceFacts:
    try:
        facts = read_invoice(text)
    except PaymentAuthError as exc:
        raise PaymentAuthError(
            Reason.VERIFICATION_FAILED, f"challenged invoice: {exc.detail}"
        ) from None
    if facts.expires_at <= now:
        raise PaymentAuthError(Reason.INVOICE_EXPIRED, "the challenged invoice has expired")
    return facts


def _request(echo: ChallengeParams) -> dict[str, object]:
    try:
        return echo.request_object()
    except PaymentAuthError as exc:
        raise PaymentAuthError(Reason.VERIFICATION_FAILED, exc.detail) from None


def _priced(amount: int, expected: int | None) -> None:
    if expected is not None and amount < expected:
        raise PaymentAuthError(
            Reason.PAYMENT_INSUFFICIENT,
            f"challenge priced {amount} sat, the route costs {expected}",
        )


def _expires_at(echo: ChallengeParams, facts: InvoiceFacts) -> float:
    return min(float(facts.expires_at), parse_time(echo.expires or ""))


def verify_charge(
    binding: Binding,
    credential: Credential,
    *,
    now: float,
    expected_amount_sats: int | None = None,
    expected_opaque: Mapping[str, str] | None = None,
    body_digest: str | None = None,
) -> VerifiedCharge:
    """Every stateless check of a charge credential (see module docstring)."""
    echo = credential.challenge
    if echo.method != lightning.METHOD or echo.intent != lightning.CHARGE:
        raise PaymentAuthError(Reason.METHOD_UNSUPPORTED, "not a lightning charge credential")
    payload = parse_charge_payload(credential.payload)
    check_binding(
        binding, echo, intent=lightning.CHARGE, now=now, body_digest=body_digest,
        expected_opaque=expected_opaque,
    )  # fmt: skip
    try:
        request = lightning.parse_charge_request(_request(echo))
    except PaymentAuthError as exc:
        raise PaymentAuthError(Reason.VERIFICATION_FAILED, exc.detail) from None
    facts = _invoice(request.invoice, now=now)
    problem = lightning.charge_problem(request, facts)
    if problem is not None:
        raise PaymentAuthError(Reason.VERIFICATION_FAILED, problem)
    _priced(request.amount_sats, expected_amount_sats)
    verify_preimage(payload.preimage, facts.payment_hash)
    return VerifiedCharge(
        echo.id, facts.payment_hash, request.amount_sats, _expires_at(echo, facts)
    )


def session_payload(credential: Credential) -> SessionPayload:
    """Steps 1-2 for a session credential: which action, well formed."""
    echo = credential.challenge
    if echo.method != lightning.METHOD or echo.intent != lightning.SESSION:
        raise PaymentAuthError(Reason.METHOD_UNSUPPORTED, "not a lightning session credential")
    return parse_session_payload(credential.payload)


def _session_request(echo: ChallengeParams) -> lightning.SessionRequest:
    try:
        return lightning.parse_session_request(_request(echo))
    except PaymentAuthError as exc:
        raise PaymentAuthError(Reason.VERIFICATION_FAILED, exc.detail) from None


def _deposit(echo: ChallengeParams, now: float) -> tuple[lightning.SessionRequest, InvoiceFacts]:
    """A challenge that carries a deposit invoice (open, topUp) and its facts."""
    request = _session_request(echo)
    if request.deposit_invoice is None:
        raise PaymentAuthError(
            Reason.VERIFICATION_FAILED, "the challenge carries no deposit invoice"
        )
    facts = _invoice(request.deposit_invoice, now=now)
    problem = lightning.session_problem(request, facts)
    if problem is not None:
        raise PaymentAuthError(Reason.VERIFICATION_FAILED, problem)
    return request, facts


def _return_invoice(text: str, deposit: InvoiceFacts, now: float, min_validity: float) -> None:
    try:
        facts = read_invoice(text)
    except PaymentAuthError as exc:
        raise PaymentAuthError(Reason.INVALID_RETURN_INVOICE, exc.detail) from None
    if facts.amount_msat:
        raise PaymentAuthError(Reason.INVALID_RETURN_INVOICE, "the return invoice names an amount")
    if facts.network != deposit.network:
        raise PaymentAuthError(
            Reason.INVALID_RETURN_INVOICE, "the return invoice is on another network"
        )
    if facts.expires_at <= now + min_validity:
        raise PaymentAuthError(Reason.INVALID_RETURN_INVOICE, "the return invoice expires too soon")


def verify_open(
    binding: Binding,
    credential: Credential,
    payload: OpenPayload,
    *,
    now: float,
    expected_unit_sats: int | None = None,
    min_return_validity: float = 0.0,
    body_digest: str | None = None,
) -> VerifiedOpen:
    """An open: binding, deposit invoice, return invoice (no amount, same network,
    valid for `min_return_validity` more seconds), deposit preimage."""
    echo = credential.challenge
    check_binding(binding, echo, intent=lightning.SESSION, now=now, body_digest=body_digest)
    request, facts = _deposit(echo, now)
    _priced(request.amount_sats, expected_unit_sats)
    _return_invoice(payload.return_invoice, facts, now, min_return_validity)
    verify_preimage(payload.preimage, facts.payment_hash)
    assert facts.amount_msat is not None
    return VerifiedOpen(
        echo.id, facts.payment_hash, facts.amount_msat // 1000, request.amount_sats,
        payload.return_invoice, _expires_at(echo, facts),
    )  # fmt: skip


def _open_session(session: SessionState | None, session_id: bytes) -> SessionState:
    if session is None or not hmac.compare_digest(session.session_id, session_id):
        raise PaymentAuthError(Reason.SESSION_NOT_FOUND, "no such session")
    if session.status is not Status.OPEN:
        raise PaymentAuthError(Reason.SESSION_CLOSED, "the session is closed")
    return session


def verify_top_up(
    binding: Binding,
    credential: Credential,
    payload: TopUpPayload,
    session: SessionState | None,
    *,
    now: float,
) -> VerifiedTopUp:
    """A top-up: binding, a deposit invoice that is not the session's own, open session,
    top-up preimage. The seller must still consume `challenge_id` (replay)."""
    echo = credential.challenge
    check_binding(binding, echo, intent=lightning.SESSION, now=now)
    _, facts = _deposit(echo, now)
    state = _open_session(session, payload.session_id)
    if hmac.compare_digest(facts.payment_hash, state.session_id):
        raise PaymentAuthError(Reason.UNKNOWN_CHALLENGE, "the session's own deposit is no top-up")
    verify_preimage(payload.top_up_preimage, facts.payment_hash)
    assert facts.amount_msat is not None
    return VerifiedTopUp(
        echo.id, state.session_id, facts.payment_hash, facts.amount_msat // 1000,
        _expires_at(echo, facts),
    )  # fmt: skip


def verify_session_owner(
    binding: Binding,
    credential: Credential,
    payload: BearerPayload | ClosePayload,
    session: SessionState | None,
    *,
    now: float,
) -> SessionState:
    """A bearer or close: binding of an unexpired session challenge of ours, the session
    open, sha256(preimage) == session id. No balance is touched here."""
    check_binding(binding, credential.challenge, intent=lightning.SESSION, now=now)
    state = _open_session(session, payload.session_id)
    verify_preimage(payload.preimage, state.session_id)
    return state
