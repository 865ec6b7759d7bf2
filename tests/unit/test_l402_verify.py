"""verify(): order of checks and a typed reason for every failure."""

from __future__ import annotations

import hashlib

import pytest
from pymacaroons import MACAROON_V1, Macaroon

from gateway.l402 import caveats, macaroons
from gateway.l402.credentials import parse
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier
from gateway.l402.verify import VerifiedToken, precheck, verify

ROOT_KEY = b"\x42" * 32
OTHER_KEY = b"\x43" * 32
PREIMAGE = b"\x99" * 32
NOW = 1_700_000_000
IDENT = Identifier(0, hashlib.sha256(PREIMAGE).digest(), b"\x05" * 32)
CAVEATS = caveats.for_route("svc", ["read"], NOW + 60)


def _header(raw: bytes, preimage: bytes = PREIMAGE) -> list[tuple[str, str]]:
    return [("Authorization", f"L402 {macaroons.encode_b64(raw)}:{preimage.hex()}")]


def _reason(raw: bytes, root_key: bytes | None = ROOT_KEY, **kw: object) -> Reason:
    args: dict[str, object] = {"service": "svc", "required_capability": None, "now": NOW}
    args.update(kw)

    def attempt() -> None:
        cred = parse(_header(raw))
        assert cred is not None
        verify(cred, root_key, **args)  # type: ignore[arg-type]

    with pytest.raises(L402Error) as info:
        attempt()
    return info.value.reason


GOOD = macaroons.mint(ROOT_KEY, IDENT.encode(), CAVEATS)


def test_valid_token() -> None:
    cred = parse(_header(GOOD))
    assert cred is not None
    token = verify(cred, ROOT_KEY, "svc", "read", NOW)
    assert token == VerifiedToken(IDENT, IDENT.key_id, NOW + 60)
    assert token.token_id_hex == "05" * 32


def test_precheck_gives_key_id_without_secret() -> None:
    cred = parse(_header(GOOD))
    assert cred is not None
    assert precheck(cred).key_id == hashlib.sha256(IDENT.encode()).digest()


def test_grpc_form_verifies() -> None:
    with_preimage = macaroons.add_caveat(macaroons.decode_raw(GOOD), f"preimage={PREIMAGE.hex()}")
    cred = parse([("Grpc-Metadata-Macaroon", with_preimage.hex())])
    assert cred is not None
    assert verify(cred, ROOT_KEY, "svc", "read", NOW).key_id == IDENT.key_id


def test_wrong_preimage() -> None:
    cred = parse(_header(GOOD, preimage=b"\x98" * 32))
    assert cred is not None
    with pytest.raises(L402Error) as info:
        verify(cred, ROOT_KEY, "svc", None, NOW)
    assert info.value.reason is Reason.PREIMAGE_MISMATCH


def test_preimage_checked_before_root_key() -> None:
    cred = parse(_header(GOOD, preimage=b"\x98" * 32))
    assert cred is not None
    with pytest.raises(L402Error) as info:
        verify(cred, None, "svc", None, NOW)
    assert info.value.reason is Reason.PREIMAGE_MISMATCH


def test_missing_root_key_is_revoked() -> None:
    assert _reason(GOOD, root_key=None) is Reason.REVOKED


def test_forged_with_other_key() -> None:
    forged = macaroons.mint(OTHER_KEY, IDENT.encode(), CAVEATS)
    assert _reason(forged) is Reason.BAD_SIGNATURE


def test_forged_caveat_checked_after_signature() -> None:
    # an attacker widening the service list is stopped by the HMAC, not by caveat rules
    forged = macaroons.mint(OTHER_KEY, IDENT.encode(), ["services=other:0"])
    assert _reason(forged) is Reason.BAD_SIGNATURE


def test_tampered_signature_and_caveat() -> None:
    flipped = bytearray(GOOD)
    flipped[-5] ^= 0x80
    assert _reason(bytes(flipped)) is Reason.BAD_SIGNATURE
    extended = GOOD.replace(str(NOW + 60).encode(), str(NOW + 99).encode())
    assert extended != GOOD
    assert _reason(extended) is Reason.BAD_SIGNATURE


def test_bad_identifier_is_malformed() -> None:
    raw = macaroons.mint(ROOT_KEY, b"\x00\x01" + IDENT.encode()[2:], CAVEATS)
    assert _reason(raw) is Reason.MALFORMED
    short = macaroons.mint(ROOT_KEY, IDENT.encode()[:-1], CAVEATS)
    assert _reason(short) is Reason.MALFORMED


def test_truncated_trailing_junk_and_v1_are_malformed() -> None:
    assert _reason(GOOD[:-3]) is Reason.MALFORMED
    assert _reason(GOOD + b"\x00") is Reason.MALFORMED
    # V1 identifiers must be text, so the hex form stands in
    v1 = Macaroon(
        location="lsat", identifier=IDENT.encode().hex(), key=ROOT_KEY, version=MACAROON_V1
    )
    with pytest.raises(L402Error) as info:
        parse([("Authorization", f"L402 {v1.serialize()}:{PREIMAGE.hex()}")])
    assert info.value.reason is Reason.MALFORMED


def test_junk_character_is_malformed() -> None:
    text = macaroons.encode_b64(GOOD)
    with pytest.raises(L402Error) as info:
        parse([("Authorization", f"L402 {text[:10]}*{text[10:]}:{PREIMAGE.hex()}")])
    assert info.value.reason is Reason.MALFORMED


def test_expired() -> None:
    assert _reason(GOOD, now=NOW + 61) is Reason.EXPIRED


def test_wrong_route() -> None:
    assert _reason(GOOD, service="other") is Reason.WRONG_ROUTE


def test_missing_capability() -> None:
    assert _reason(GOOD, required_capability="write") is Reason.MISSING_CAPABILITY


def test_holder_can_narrow_but_not_widen() -> None:
    decoded = macaroons.decode_raw(GOOD)
    earlier = macaroons.add_caveat(decoded, f"svc_valid_until={NOW - 1}")
    assert _reason(earlier) is Reason.EXPIRED
    later = macaroons.add_caveat(decoded, f"svc_valid_until={NOW + 10_000}")
    assert _reason(later, now=NOW + 61) is Reason.EXPIRED
    widened = macaroons.add_caveat(decoded, "services=svc:0,other:0")
    assert _reason(widened, service="other") is Reason.WRONG_ROUTE
    unknown = macaroons.add_caveat(decoded, "method=GET")
    assert _reason(unknown) is Reason.MALFORMED


def test_mismatched_preimage_caveat_with_valid_signature() -> None:
    appended = macaroons.add_caveat(macaroons.decode_raw(GOOD), "preimage=" + "00" * 32)
    assert _reason(appended) is Reason.PREIMAGE_MISMATCH
