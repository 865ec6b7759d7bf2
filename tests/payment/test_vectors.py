"""Conformance: every case of Aperture's cross-implementation vectors against our core.

The file is a copy of Aperture's `mpp/testdata/vectors.json` (provenance and
licence: data/README.md). Each section is replayed the way Aperture's own
replay test does, with one recorded deviation: base64url padding. The
vectors accept `aGVsbG8=` (canonical: false); our wire decoder refuses every
non-canonical spelling (docs/payment-scheme.md, "Decisions"), so that case
is replayed against the opt-in `allow_padding=True` decoder and the strict
decoder is asserted to refuse it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.payment import b64url, challenge, credential, jcs, receipts, wwwauth
from gateway.payment.errors import PaymentAuthError, Reason

VECTORS_PATH = Path(__file__).parent / "data" / "aperture-mpp-vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
SECTIONS = (
    "canonicalization",
    "base64url",
    "challengeHeaders",
    "challengeLists",
    "challengeIds",
    "credentials",
    "receipts",
)
PARAM_NAMES = (
    "id",
    "realm",
    "method",
    "intent",
    "request",
    "expires",
    "digest",
    "description",
    "opaque",
)


def cases(section: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in VECTORS[section]]


def params(doc: dict[str, str]) -> challenge.ChallengeParams:
    return challenge.ChallengeParams(**{name: doc.get(name) for name in PARAM_NAMES})  # type: ignore[arg-type]


def test_the_file_is_the_version_and_shape_we_replay() -> None:
    assert VECTORS["version"] == 1
    known = {"version", "description", "hmacSecretHex", *SECTIONS}
    assert set(VECTORS) == known, "a new section appeared: replay it here"
    assert {s: len(VECTORS[s]) for s in SECTIONS} == {
        "canonicalization": 22,
        "base64url": 17,
        "challengeHeaders": 6,
        "challengeLists": 11,
        "challengeIds": 4,
        "credentials": 11,
        "receipts": 8,
    }


@pytest.mark.parametrize("case", cases("canonicalization"))
def test_canonicalization(case: dict[str, Any]) -> None:
    if case.get("error"):
        with pytest.raises(PaymentAuthError) as refused:
            jcs.canonicalize_text(case["input"])
        assert refused.value.reason is Reason.MALFORMED_JSON
        return
    out = jcs.canonicalize_text(case["input"])
    assert out.decode("utf-8") == case["canonical"]
    assert jcs.canonicalize_text(out) == out  # the fixed point every peer converges on


@pytest.mark.parametrize("case", cases("base64url"))
def test_base64url(case: dict[str, Any]) -> None:
    encoded = case["encoded"]
    if case.get("error"):
        for padding in (False, True):
            with pytest.raises(PaymentAuthError) as refused:
                b64url.decode(encoded, allow_padding=padding)
            assert refused.value.reason is Reason.MALFORMED_BASE64URL
        return
    expected = bytes.fromhex(case.get("decodedHex", ""))
    if case["canonical"]:
        assert b64url.decode(encoded) == expected
        assert b64url.encode(expected) == encoded
        return
    # The one accepted-but-not-canonical spelling: padding (see module docstring).
    with pytest.raises(PaymentAuthError):
        b64url.decode(encoded)
    assert b64url.decode(encoded, allow_padding=True) == expected
    assert b64url.encode(expected) != encoded


@pytest.mark.parametrize("case", cases("challengeHeaders"))
def test_challenge_header_emit_and_reparse(case: dict[str, Any]) -> None:
    emitted = wwwauth.format_challenge(params(case["params"]))
    assert emitted == case["header"]
    assert wwwauth.parse_challenges(case["header"]) == [params(case["parsed"])]
    assert case["params"] == case["parsed"]  # lossless: the HMAC depends on it


@pytest.mark.parametrize("case", cases("challengeLists"))
def test_challenge_lists(case: dict[str, Any]) -> None:
    if case.get("error"):
        with pytest.raises(PaymentAuthError) as refused:
            wwwauth.parse_challenges(case["header"])
        assert refused.value.reason in (Reason.NO_CHALLENGE, Reason.MALFORMED_CHALLENGE)
        return
    offers = wwwauth.parse_challenges(case["header"])
    assert offers == [params(c) for c in case["challenges"]]


@pytest.mark.parametrize("case", cases("challengeIds"))
def test_challenge_ids(case: dict[str, Any]) -> None:
    secret = bytes.fromhex(VECTORS["hmacSecretHex"])
    p = params(case["params"])
    assert challenge.hmac_input(p) == case["hmacInput"]
    assert challenge.compute_id(secret, p) == p.id
    assert challenge.verify_id(secret, p)
    assert not challenge.verify_id(secret + b"x", p)


@pytest.mark.parametrize("case", cases("credentials"))
def test_credentials(case: dict[str, Any]) -> None:
    if case.get("error"):
        with pytest.raises(PaymentAuthError) as refused:
            credential.parse_authorization(case["header"])
        assert refused.value.reason is Reason.MALFORMED_CREDENTIAL
        return
    parsed = credential.parse_authorization(case["header"])
    want = json.loads(case["credentialJson"])
    assert parsed.challenge == params(want["challenge"])
    assert parsed.source == want.get("source")
    assert parsed.payload == want["payload"]


@pytest.mark.parametrize("case", cases("receipts"))
def test_receipts(case: dict[str, Any]) -> None:
    raw = b64url.decode(case["header"])
    assert raw.decode("utf-8") == case["receiptJson"]
    doc = json.loads(case["receiptJson"])
    if "sessionId" in doc:  # the need-top-up event shapes
        event = receipts.parse_balance_event(case["receiptJson"])
        assert (event.session_id, event.balance_spent, event.balance_required) == (
            doc["sessionId"], doc["balanceSpent"], doc["balanceRequired"],
        )  # fmt: skip
        return
    receipt = receipts.parse_receipt(case["header"])
    assert receipt.reference == doc["reference"]
    assert receipt.challenge_id == doc.get("challengeId")
    assert receipt.refund_sats == doc.get("refundSats")  # exact, even above 2^53
    status = doc.get("refundStatus")
    assert receipt.refund_status == (None if status is None else receipts.RefundStatus(status))
