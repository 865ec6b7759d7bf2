"""Identifier codec: Aperture's 66-byte layout, strict decoding."""

from __future__ import annotations

import hashlib

import pytest

from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import ENCODED_LEN, Identifier

PAYMENT_HASH = bytes(range(32))
TOKEN_ID = bytes(range(100, 132))


def test_encode_layout_is_version_hash_token_id() -> None:
    ident = Identifier(0, PAYMENT_HASH, TOKEN_ID)
    raw = ident.encode()
    assert len(raw) == ENCODED_LEN == 66
    assert raw[:2] == b"\x00\x00"
    assert raw[2:34] == PAYMENT_HASH
    assert raw[34:] == TOKEN_ID


def test_round_trip() -> None:
    ident = Identifier(0, PAYMENT_HASH, TOKEN_ID)
    assert Identifier.decode(ident.encode()) == ident


def test_key_id_is_sha256_of_encoding() -> None:
    ident = Identifier(0, PAYMENT_HASH, TOKEN_ID)
    assert ident.key_id == hashlib.sha256(ident.encode()).digest()
    assert ident.token_id_hex == TOKEN_ID.hex()


def test_new_uses_fresh_random_token_ids() -> None:
    first = Identifier.new(PAYMENT_HASH)
    second = Identifier.new(PAYMENT_HASH)
    assert first.payment_hash == second.payment_hash == PAYMENT_HASH
    assert first.version == 0
    assert len(first.token_id) == 32
    assert first.token_id != second.token_id
    assert first.key_id != second.key_id


@pytest.mark.parametrize("length", [0, 1, 65, 67, 200])
def test_decode_rejects_wrong_length(length: int) -> None:
    with pytest.raises(L402Error) as info:
        Identifier.decode(b"\x00" * length)
    assert info.value.reason is Reason.MALFORMED
    assert str(length) in info.value.detail


@pytest.mark.parametrize("version", [1, 2, 256, 0xFFFF])
def test_decode_rejects_other_versions(version: int) -> None:
    raw = version.to_bytes(2, "big") + PAYMENT_HASH + TOKEN_ID
    with pytest.raises(L402Error) as info:
        Identifier.decode(raw)
    assert info.value.reason is Reason.MALFORMED
    assert "version" in info.value.detail


def test_constructor_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="payment hash"):
        Identifier(0, b"short", TOKEN_ID)
    with pytest.raises(ValueError, match="token id"):
        Identifier(0, PAYMENT_HASH, b"short")
    with pytest.raises(ValueError, match="version"):
        Identifier(1, PAYMENT_HASH, TOKEN_ID)
