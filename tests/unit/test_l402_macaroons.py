"""Macaroon V2: byte identity with pymacaroons, strict decoding, HMAC check."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymacaroons import MACAROON_V1, MACAROON_V2, Macaroon, Verifier
from pymacaroons.exceptions import MacaroonInvalidSignatureException
from pymacaroons.serializers.binary_serializer import BinarySerializer

from gateway.l402 import macaroons
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier

ROOT_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
IDENT = Identifier(0, b"\x11" * 32, b"\x22" * 32).encode()
CAVEATS = ["services=ep212:0", "ep212_capabilities=read,write", "ep212_valid_until=1800000000"]


def _pymacaroon(caveats: list[str], version: int = MACAROON_V2) -> Macaroon:
    mac = Macaroon(location="lsat", identifier=IDENT, key=ROOT_KEY, version=version)
    for caveat in caveats:
        mac.add_first_party_caveat(caveat)
    return mac


def _malformed(text: str | bytes) -> L402Error:
    with pytest.raises(L402Error) as info:
        macaroons.decode(text)
    assert info.value.reason is Reason.MALFORMED
    return info.value


@pytest.mark.parametrize("caveats", [[], CAVEATS[:1], CAVEATS, ["x" * 300]])
def test_mint_is_byte_identical_to_pymacaroons(caveats: list[str]) -> None:
    ours = macaroons.mint(ROOT_KEY, IDENT, caveats)
    theirs = _pymacaroon(caveats)
    assert ours == BinarySerializer().serialize_raw(theirs)
    # pymacaroons' own text form is url-safe unpadded base64 of the same bytes
    assert base64.urlsafe_b64decode(theirs.serialize() + "==") == ours


def test_pymacaroons_verifier_accepts_minted_token() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    parsed = Macaroon.deserialize(macaroons.encode_b64(raw))
    verifier = Verifier()
    for caveat in CAVEATS:
        verifier.satisfy_exact(caveat)
    assert verifier.verify(parsed, ROOT_KEY)
    with pytest.raises(MacaroonInvalidSignatureException):
        Verifier().verify(parsed, OTHER_KEY)


def test_decode_round_trip_and_fields() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    text = macaroons.encode_b64(raw)
    assert len(text) % 4 == 0
    decoded = macaroons.decode(text)
    assert decoded.raw == raw
    assert decoded.location == "lsat"
    assert decoded.identifier == IDENT
    assert decoded.caveats == tuple(CAVEATS)
    assert decoded.signature == bytes.fromhex(_pymacaroon(CAVEATS).signature)
    assert macaroons.decode(text.encode("ascii")) == decoded
    assert macaroons.decode_hex(raw.hex()) == decoded
    assert macaroons.decode_hex(raw.hex().upper()) == decoded


def test_decode_accepts_unpadded_and_urlsafe_spellings() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    std = macaroons.encode_b64(raw)
    url = base64.urlsafe_b64encode(raw).decode()
    assert "=" in std  # this fixture exercises padding
    for text in (std, std.rstrip("="), url, url.rstrip("=")):
        assert macaroons.decode(text).raw == raw
    # what a pymacaroons client sends
    assert macaroons.decode(_pymacaroon(CAVEATS).serialize()).raw == raw


def test_repr_hides_secrets() -> None:
    decoded = macaroons.decode(macaroons.encode_b64(macaroons.mint(ROOT_KEY, IDENT, CAVEATS)))
    text = repr(decoded)
    assert "lsat" in text
    assert decoded.signature.hex() not in text
    assert "services" not in text


def test_signature_valid_only_with_right_key() -> None:
    decoded = macaroons.decode_raw(macaroons.mint(ROOT_KEY, IDENT, CAVEATS))
    assert macaroons.signature_valid(ROOT_KEY, decoded)
    assert not macaroons.signature_valid(OTHER_KEY, decoded)


def test_forged_with_other_root_key_fails() -> None:
    forged = macaroons.decode_raw(macaroons.mint(OTHER_KEY, IDENT, CAVEATS))
    assert not macaroons.signature_valid(ROOT_KEY, forged)


def test_tampered_signature_byte_fails() -> None:
    raw = bytearray(macaroons.mint(ROOT_KEY, IDENT, CAVEATS))
    raw[-1] ^= 0x01
    assert not macaroons.signature_valid(ROOT_KEY, macaroons.decode_raw(bytes(raw)))


def test_tampered_caveat_byte_fails() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    tampered = raw.replace(b"1800000000", b"1900000000")
    assert tampered != raw
    decoded = macaroons.decode_raw(tampered)
    assert decoded.caveats[2] == "ep212_valid_until=1900000000"
    assert not macaroons.signature_valid(ROOT_KEY, decoded)


def test_dropped_caveat_fails() -> None:
    full = macaroons.decode_raw(macaroons.mint(ROOT_KEY, IDENT, CAVEATS))
    shorter = macaroons.mint(ROOT_KEY, IDENT, CAVEATS[:2])
    stripped = macaroons.decode_raw(shorter[:-32] + full.signature)
    assert not macaroons.signature_valid(ROOT_KEY, stripped)


def test_add_caveat_matches_pymacaroons_and_still_verifies() -> None:
    decoded = macaroons.decode_raw(macaroons.mint(ROOT_KEY, IDENT, CAVEATS))
    extended = macaroons.add_caveat(decoded, "preimage=" + "ab" * 32)
    theirs = _pymacaroon([*CAVEATS, "preimage=" + "ab" * 32])
    assert extended == BinarySerializer().serialize_raw(theirs)
    assert macaroons.signature_valid(ROOT_KEY, macaroons.decode_raw(extended))


def test_mint_rejects_empty_inputs() -> None:
    with pytest.raises(ValueError, match="root key"):
        macaroons.mint(b"", IDENT, [])
    with pytest.raises(ValueError, match="identifier"):
        macaroons.mint(ROOT_KEY, b"", [])
    with pytest.raises(ValueError, match="caveat"):
        macaroons.mint(ROOT_KEY, IDENT, [""])


@pytest.mark.parametrize("cut", [1, 2, 10, 33, 40])
def test_truncated_is_malformed(cut: int) -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    _malformed(macaroons.encode_b64(raw[:-cut]))


def test_v1_is_malformed() -> None:
    v1 = _pymacaroon(CAVEATS, version=MACAROON_V1).serialize()
    assert "V1" in _malformed(v1).detail


@pytest.mark.parametrize("junk", ["!", " ", "\n", "*", "é", "\x00", ".", ":"])
def test_junk_character_is_malformed(junk: str) -> None:
    text = macaroons.encode_b64(macaroons.mint(ROOT_KEY, IDENT, CAVEATS))
    middle = len(text) // 2
    _malformed(text[:middle] + junk + text[middle:])


def test_trailing_bytes_are_malformed() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    for extra in (b"\x00", b"junk", raw):
        assert "trailing" in _malformed(macaroons.encode_b64(raw + extra)).detail


def test_third_party_caveat_is_malformed() -> None:
    mac = _pymacaroon(CAVEATS[:1])
    mac.add_third_party_caveat("https://auth.example", b"k" * 32, "third-party-id")
    raw = BinarySerializer().serialize_raw(mac)
    assert "third-party" in _malformed(macaroons.encode_b64(raw)).detail


def test_oversized_input_is_malformed() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, ["x=" + "y" * 3500])
    assert len(macaroons.encode_b64(raw)) > 4096
    assert "longer" in _malformed(macaroons.encode_b64(raw)).detail
    with pytest.raises(L402Error, match="larger"):
        macaroons.decode_raw(b"\x02" + b"\x00" * 5000)


def test_mixed_alphabets_bad_padding_and_noncanonical_are_malformed() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    std = macaroons.encode_b64(raw)
    _malformed("+_" + std[2:])  # both alphabets at once
    _malformed(std.rstrip("=") + "=")  # wrong amount of padding
    _malformed(std + "==")
    _malformed("")
    # a non-zero unused trailing bit spells the same bytes differently
    body = std.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    tweaked = body[:-1] + alphabet[alphabet.index(body[-1]) + 1]
    assert "canonical" in _malformed(tweaked + "=" * (len(std) - len(body))).detail


def test_non_ascii_bytes_are_malformed() -> None:
    _malformed(b"\xff\xfe")


def test_header_and_structure_violations() -> None:
    good = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    cases = {
        "no identifier": b"\x02\x01\x04lsat\x00\x00\x00\x06\x20" + b"s" * 32,
        "wrong version byte": b"\x03" + good[1:],
        "json": b'{"c":[]}',
        "bad signature length": good[:-33] + b"\x1f" + good[-31:],
        "unknown field": b"\x02\x02\x01i\x00\x00\x03\x01x\x00\x00\x06\x20" + b"s" * 32,
        "fields out of order": b"\x02\x02\x01i\x01\x04lsat\x00\x00\x06\x20" + b"s" * 32,
        "non-minimal varint": b"\x02\x02\x81\x00i\x00\x00\x06\x20" + b"s" * 32,
        "missing signature": b"\x02\x02\x01i\x00\x00",
        "non-utf8 caveat": b"\x02\x02\x01i\x00\x02\x01\xff\x00\x00\x06\x20" + b"s" * 32,
        "empty caveat": b"\x02\x02\x01i\x00\x02\x00\x00\x00\x06\x20" + b"s" * 32,
    }
    for name, raw in cases.items():
        with pytest.raises(L402Error) as info:
            macaroons.decode_raw(raw)
        assert info.value.reason is Reason.MALFORMED, name


def test_minimal_hand_built_macaroon_parses() -> None:
    raw = b"\x02\x02\x01i\x00\x00\x06\x20" + b"s" * 32
    decoded = macaroons.decode_raw(raw)
    assert decoded.location == ""
    assert decoded.identifier == b"i"
    assert decoded.caveats == ()


@pytest.mark.parametrize("text", ["0", "abc", "zz", "0g"])
def test_decode_hex_rejects_bad_hex(text: str) -> None:
    with pytest.raises(L402Error) as info:
        macaroons.decode_hex(text)
    assert info.value.reason is Reason.MALFORMED


def test_decode_hex_rejects_whitespace_and_oversize() -> None:
    raw = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)
    with pytest.raises(L402Error):
        macaroons.decode_hex(raw.hex()[:10] + " " + raw.hex()[10:])
    with pytest.raises(L402Error, match="longer"):
        macaroons.decode_hex("00" * 4097)


_VALID = macaroons.mint(ROOT_KEY, IDENT, CAVEATS)


@given(st.binary(max_size=600))
def test_decode_raw_never_raises_anything_but_l402error(data: bytes) -> None:
    try:
        outcome: macaroons.DecodedMacaroon | L402Error = macaroons.decode_raw(data)
    except L402Error as exc:
        outcome = exc
    if isinstance(outcome, L402Error):
        assert outcome.reason is Reason.MALFORMED
    else:
        assert outcome.raw == data


@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255))
def test_single_byte_mutation_is_rejected_or_breaks_signature(pos: int, value: int) -> None:
    mutated = bytearray(_VALID)
    mutated[pos] = value
    try:
        decoded = macaroons.decode_raw(bytes(mutated))
    except L402Error:
        return
    if bytes(mutated) != _VALID:
        assert not macaroons.signature_valid(ROOT_KEY, decoded) or decoded.location != "lsat"
