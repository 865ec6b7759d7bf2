"""Every credential form from the facts file, plus a property test."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.l402 import credentials, macaroons
from gateway.l402.credentials import Credential, format_authorization, parse
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier

ROOT_KEY = b"\x07" * 32
PREIMAGE = bytes(range(32))
OTHER_PREIMAGE = b"\x55" * 32
IDENT = Identifier(0, hashlib.sha256(PREIMAGE).digest(), b"\x01" * 32)
RAW = macaroons.mint(ROOT_KEY, IDENT.encode(), ["services=svc:0"])
MAC = macaroons.encode_b64(RAW)
PRE = PREIMAGE.hex()


def _grpc_hex(preimage_hex: str = PRE) -> str:
    decoded = macaroons.decode_raw(RAW)
    return macaroons.add_caveat(decoded, f"preimage={preimage_hex}").hex()


def _malformed(headers: list[tuple[str, str]]) -> str:
    with pytest.raises(L402Error) as info:
        parse(headers)
    assert info.value.reason is Reason.MALFORMED
    return info.value.detail


def _check(cred: Credential | None, scheme: str) -> Credential:
    assert cred is not None
    assert cred.macaroon.raw == RAW
    assert cred.preimage == PREIMAGE
    assert cred.scheme == scheme
    return cred


def test_no_credential_is_none() -> None:
    assert parse([]) is None
    assert parse([("Accept", "*/*"), ("Authorization", "Bearer abc.def")]) is None
    assert parse([("Authorization", "")]) is None
    assert parse([("Authorization", "Basic dXNlcjpwYXNz")]) is None
    assert parse([("Macaroon", "")]) is None


@pytest.mark.parametrize("scheme", ["L402", "LSAT"])
def test_token_form(scheme: str) -> None:
    _check(parse([("Authorization", f"{scheme} {MAC}:{PRE}")]), scheme)


def test_scheme_and_header_name_case_insensitive() -> None:
    _check(parse([("authorization", f"l402 {MAC}:{PRE}")]), "L402")
    _check(parse([("AUTHORIZATION", f"lsat {MAC}:{PRE}")]), "LSAT")


def test_uppercase_hex_preimage() -> None:
    _check(parse([("Authorization", f"L402 {MAC}:{PRE.upper()}")]), "L402")


def test_unpadded_and_urlsafe_macaroon() -> None:
    url = base64.urlsafe_b64encode(RAW).decode().rstrip("=")
    _check(parse([("Authorization", f"L402 {url}:{PRE}")]), "L402")


def test_surrounding_whitespace_tolerated() -> None:
    _check(parse([("Authorization", f"  L402   {MAC}:{PRE}  ")]), "L402")


@pytest.mark.parametrize("mac_key", ["macaroon", "token", "MACAROON"])
def test_param_form(mac_key: str) -> None:
    value = f'L402 {mac_key}="{MAC}", preimage="{PRE}"'
    _check(parse([("Authorization", value)]), "L402")


def test_param_form_variants() -> None:
    _check(parse([("Authorization", f'LSAT preimage="{PRE}",macaroon="{MAC}"')]), "LSAT")
    _check(parse([("Authorization", f"L402 macaroon={MAC}, preimage={PRE}")]), "L402")
    value = f'L402 version="0", token="{MAC}", preimage="{PRE}"'
    _check(parse([("Authorization", value)]), "L402")


@pytest.mark.parametrize(
    "value",
    [
        f'L402 macaroon="{MAC}"',
        f'L402 preimage="{PRE}"',
        f'L402 macaroon="{MAC}", token="{MAC}", preimage="{PRE}"',
        f'L402 macaroon="{MAC}", preimage="{PRE}", invoice="lnbc1"',
        f'L402 macaroon="{MAC}", macaroon="{MAC}", preimage="{PRE}"',
        f'L402 macaroon="{MAC}", preimage="{PRE}",',
        f'L402 version="1", macaroon="{MAC}", preimage="{PRE}"',
        f'L402 macaroon="{MAC}" preimage="{PRE}"',
        f'L402 macaroon="{MAC}, preimage="{PRE}"',
    ],
)
def test_broken_param_form(value: str) -> None:
    _malformed([("Authorization", value)])


def test_grpc_metadata_macaroon_with_preimage_caveat() -> None:
    for name in ("Grpc-Metadata-Macaroon", "grpc-metadata-macaroon", "Macaroon", "macaroon"):
        cred = parse([(name, _grpc_hex())])
        assert cred is not None
        assert cred.preimage == PREIMAGE
        assert cred.scheme == credentials.SCHEME_MACAROON_HEADER
        assert cred.macaroon.caveats[-1] == f"preimage={PRE}"
    assert parse([("Macaroon", _grpc_hex().upper())]) is not None
    assert parse([("Macaroon", _grpc_hex(PRE.upper()))]) is not None


def test_grpc_metadata_preferred_over_macaroon_header() -> None:
    other = macaroons.add_caveat(macaroons.decode_raw(RAW), f"preimage={OTHER_PREIMAGE.hex()}")
    cred = parse([("Macaroon", other.hex()), ("Grpc-Metadata-Macaroon", _grpc_hex())])
    assert cred is not None
    assert cred.preimage == PREIMAGE


def test_macaroon_header_without_preimage_caveat() -> None:
    assert "preimage caveat" in _malformed([("Macaroon", RAW.hex())])


def test_macaroon_header_with_conflicting_preimage_caveats() -> None:
    both = macaroons.add_caveat(
        macaroons.decode_raw(bytes.fromhex(_grpc_hex())), "preimage=" + "00" * 32
    )
    assert "conflicting" in _malformed([("Macaroon", both.hex())])


def test_macaroon_header_rejects_base64() -> None:
    _malformed([("Grpc-Metadata-Macaroon", MAC)])


def test_authorization_wins_over_macaroon_headers() -> None:
    headers = [("Macaroon", "not even hex"), ("Authorization", f"L402 {MAC}:{PRE}")]
    _check(parse(headers), "L402")


def test_lsat_and_l402_headers_carrying_same_credential() -> None:
    unpadded = MAC.rstrip("=")
    headers = [
        ("Authorization", f"LSAT {unpadded}:{PRE}"),
        ("Authorization", f"L402 {MAC}:{PRE.upper()}"),
    ]
    _check(parse(headers), "L402")
    _check(parse([("Authorization", f"LSAT {MAC}:{PRE}")] * 2), "LSAT")


def test_bearer_next_to_l402_is_ignored() -> None:
    headers = [("Authorization", "Bearer xyz"), ("Authorization", f"L402 {MAC}:{PRE}")]
    _check(parse(headers), "L402")


def test_disagreeing_credentials_are_malformed() -> None:
    other = macaroons.encode_b64(macaroons.mint(ROOT_KEY, IDENT.encode(), ["services=x:0"]))
    detail = _malformed(
        [("Authorization", f"L402 {MAC}:{PRE}"), ("Authorization", f"L402 {other}:{PRE}")]
    )
    assert "disagree" in detail
    _malformed(
        [
            ("Authorization", f"LSAT {MAC}:{PRE}"),
            ("Authorization", f"L402 {MAC}:{OTHER_PREIMAGE.hex()}"),
        ]
    )


def test_one_broken_l402_header_poisons_the_request() -> None:
    _malformed([("Authorization", f"L402 {MAC}:{PRE}"), ("Authorization", "L402 garbage")])


def test_l402_requests_mangled_preimage_is_recovered() -> None:
    """l402-requests' LND wallet base64-decodes the hex preimage and sends 96 hex chars."""
    mangled = base64.b64decode(PRE).hex()
    assert len(mangled) == 96
    credential = credentials.parse([("Authorization", f"L402 {MAC}:{mangled}")])
    assert credential is not None
    assert credential.preimage.hex() == PRE.lower()


def test_96_hex_preimage_is_rejected_naming_the_length() -> None:
    detail = _malformed([("Authorization", f"L402 {MAC}:{PRE}{'ab' * 16}")])
    assert "96" in detail
    assert "64" in detail
    assert PRE not in detail


@pytest.mark.parametrize(
    "value",
    [
        "L402",
        "L402 ",
        f"L402 {MAC}",
        f"L402 {MAC}:",
        f"L402 :{PRE}",
        f"L402 {MAC}:{PRE[:-2]}",
        f"L402 {MAC}:{PRE[:-1]}g",
        f"L402 {MAC}:{PRE}:{PRE}",
        f"L402 {MAC[:-8]}:{PRE}",
        f"L402 {MAC}!:{PRE}",
        f"LSAT {MAC} :{PRE}",
        "L402 " + "A" * 9000 + f":{PRE}",
    ],
)
def test_broken_token_form(value: str) -> None:
    detail = _malformed([("Authorization", value)])
    assert PRE not in detail
    assert MAC not in detail


def test_repr_hides_secrets() -> None:
    cred = parse([("Authorization", f"L402 {MAC}:{PRE}")])
    assert cred is not None
    text = repr(cred)
    assert PRE not in text
    assert MAC not in text


def test_format_authorization_and_forwarded_value() -> None:
    assert format_authorization(MAC, PRE) == f"L402 {MAC}:{PRE}"
    cred = parse([("Authorization", f"LSAT {MAC.rstrip('=')}:{PRE.upper()}")])
    assert cred is not None
    assert cred.authorization == f"L402 {MAC}:{PRE}"
    assert cred.macaroon_b64 == MAC


def test_parse_preimage() -> None:
    assert credentials.parse_preimage(PRE.upper()) == PREIMAGE
    with pytest.raises(L402Error, match="got 0"):
        credentials.parse_preimage("")


# --- property: parse only ever returns None / Credential or raises L402Error ---

_GOOD = [
    ("Authorization", f"L402 {MAC}:{PRE}"),
    ("Authorization", f'L402 macaroon="{MAC}", preimage="{PRE}"'),
    ("Grpc-Metadata-Macaroon", _grpc_hex()),
]
_NAMES = st.sampled_from(
    ["Authorization", "authorization", "Macaroon", "Grpc-Metadata-Macaroon", "X-Other"]
)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, str]:
    name, value = draw(st.sampled_from(_GOOD))
    chars = list(value)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        pos = draw(st.integers(0, max(len(chars) - 1, 0)))
        char = draw(st.characters(codec="utf-8") | st.sampled_from(list(' "=,:+/_-\t\x00')))
        if op == "replace" and chars:
            chars[pos] = char
        elif op == "delete" and chars:
            del chars[pos]
        elif op == "insert":
            chars.insert(pos, char)
        else:
            chars = chars[:pos]
    return name, "".join(chars)


_HEADER = st.tuples(_NAMES, st.text(max_size=200)) | _mutated() | st.sampled_from(_GOOD)


def _outcome(headers: list[tuple[str, str]]) -> Credential | L402Error | None:
    try:
        return parse(headers)
    except L402Error as exc:
        return exc


@given(st.lists(_HEADER, max_size=4))
@example([("Authorization", 'L402 macaroon="", preimage=""')])
@example([("Authorization", "L402 ::::")])
@example([("Authorization", "LSAT \x00")])
def test_parse_never_raises_anything_else(headers: list[tuple[str, str]]) -> None:
    result = _outcome(headers)  # any other exception type fails the test
    if isinstance(result, L402Error):
        assert result.reason is Reason.MALFORMED
        assert PRE not in result.detail
        assert MAC.rstrip("=") not in result.detail
    elif result is not None:
        assert isinstance(result, Credential)
        assert len(result.preimage) == 32


# -- bLIP-26 Token headers (Aperture's precedence) ----------------------------------------


@pytest.mark.parametrize("name", ["Token", "token", "Grpc-Metadata-Token", "GRPC-METADATA-TOKEN"])
def test_token_headers_carry_a_macaroon_with_preimage_caveat(name: str) -> None:
    cred = parse([(name, _grpc_hex())])
    assert cred is not None
    assert cred.preimage == PREIMAGE
    assert cred.scheme == credentials.SCHEME_MACAROON_HEADER


def test_token_header_wins_over_authorization_and_macaroon_headers() -> None:
    other = macaroons.add_caveat(macaroons.decode_raw(RAW), f"preimage={OTHER_PREIMAGE.hex()}")
    headers = [
        ("Authorization", f"L402 {MAC}:{OTHER_PREIMAGE.hex()}"),
        ("Macaroon", other.hex()),
        ("Grpc-Metadata-Token", other.hex()),
        ("Token", _grpc_hex()),
    ]
    cred = parse(headers)
    assert cred is not None
    assert cred.preimage == PREIMAGE


def test_grpc_token_wins_over_authorization() -> None:
    headers = [("Authorization", "L402 garbage:xyz"), ("Grpc-Metadata-Token", _grpc_hex())]
    cred = parse(headers)
    assert cred is not None
    assert cred.preimage == PREIMAGE


def test_broken_token_header_is_malformed_not_ignored() -> None:
    # It ranks first, as in Aperture: a broken one is refused rather than skipped.
    assert "preimage caveat" in _malformed(
        [("Token", RAW.hex()), ("Authorization", f"L402 {MAC}:{PRE}")]
    )
    _malformed([("Token", "not hex")])


def test_empty_token_header_falls_through() -> None:
    _check(parse([("Token", "  "), ("Authorization", f"L402 {MAC}:{PRE}")]), "L402")
