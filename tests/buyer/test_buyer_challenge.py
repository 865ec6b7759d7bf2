"""WWW-Authenticate parsing: every shape sellers send, and strict refusals."""

from __future__ import annotations

import pytest

from gateway.buyer.challenge import parse_challenge
from gateway.buyer.errors import ChallengeError

MAC_A = "AgEEbHNhdA=="
MAC_B = "AgEEbHNhdB=="
INV_A = "lnbcrt100n1pexample"
INV_B = "lnbcrt250u1pother"


def test_aperture_two_headers_prefers_l402() -> None:
    challenge = parse_challenge(
        [
            f'LSAT macaroon="{MAC_A}", invoice="{INV_A}"',
            f'L402 macaroon="{MAC_B}", invoice="{INV_B}"',
        ]
    )
    assert (challenge.scheme, challenge.macaroon, challenge.invoice) == ("L402", MAC_B, INV_B)
    assert challenge.amount_msats is None


def test_lsat_only_is_used_when_no_l402() -> None:
    challenge = parse_challenge([f'LSAT macaroon="{MAC_A}", invoice="{INV_A}"'])
    assert (challenge.scheme, challenge.macaroon) == ("LSAT", MAC_A)


def test_combined_single_header_two_challenges() -> None:
    value = (
        f'LSAT macaroon="{MAC_A}", invoice="{INV_A}", '
        f'L402 macaroon="{MAC_B}", invoice="{INV_B}", amount_msats="25000000"'
    )
    challenge = parse_challenge([value])
    assert (challenge.scheme, challenge.macaroon, challenge.invoice) == ("L402", MAC_B, INV_B)
    assert challenge.amount_msats == 25_000_000


def test_token_and_version_form() -> None:
    challenge = parse_challenge([f'L402 version="0", token="{MAC_A}", invoice="{INV_A}"'])
    assert (challenge.macaroon, challenge.version) == (MAC_A, "0")


def test_same_value_under_macaroon_and_token_is_fine() -> None:
    value = f'L402 macaroon="{MAC_A}", token="{MAC_A}", invoice="{INV_A}"'
    assert parse_challenge([value]).macaroon == MAC_A


def test_unquoted_values_keep_base64_padding() -> None:
    challenge = parse_challenge([f"L402 macaroon={MAC_A}, invoice={INV_A}"])
    assert (challenge.macaroon, challenge.invoice) == (MAC_A, INV_A)


def test_quoted_pair_escapes() -> None:
    challenge = parse_challenge([r'L402 macaroon="a\"b\\c", invoice="x\yz"'])
    assert challenge.macaroon == 'a"b\\c'
    assert challenge.invoice == "xyz"


def test_case_insensitive_scheme_and_names_and_extra_whitespace() -> None:
    challenge = parse_challenge([f'  l402   MACAROON = "{MAC_A}" ,Invoice="{INV_A}"  '])
    assert (challenge.scheme, challenge.macaroon, challenge.invoice) == ("L402", MAC_A, INV_A)


def test_other_schemes_are_skipped() -> None:
    challenge = parse_challenge(
        [
            'Bearer realm="api", error="invalid_token"',
            f'Basic realm="x", L402 macaroon="{MAC_A}", invoice="{INV_A}"',
            "Negotiate",
        ]
    )
    assert challenge.macaroon == MAC_A


def test_identical_duplicate_challenges_are_tolerated() -> None:
    value = f'L402 macaroon="{MAC_A}", invoice="{INV_A}"'
    assert parse_challenge([value, value]).macaroon == MAC_A


def test_unknown_attributes_are_kept_but_ignored() -> None:
    challenge = parse_challenge([f'L402 macaroon="{MAC_A}", invoice="{INV_A}", realm="x"'])
    assert challenge.params["realm"] == "x"


@pytest.mark.parametrize(
    ("values", "code"),
    [
        (
            [f'L402 macaroon="{MAC_A}", macaroon="{MAC_B}", invoice="{INV_A}"'],
            "duplicate_attribute",
        ),
        ([f'L402 macaroon="{MAC_A}", Invoice="x", invoice="{INV_A}"'], "duplicate_attribute"),
        ([f'L402 macaroon="{MAC_A}", invoice="{INV_A}'], "unterminated_quote"),
        ([f'L402 macaroon="{MAC_A}", invoice="abc\\'], "unterminated_quote"),
        ([f'L402 macaroon="{MAC_A}"'], "missing_invoice"),
        ([f'L402 macaroon="{MAC_A}", invoice=""'], "missing_invoice"),
        ([f'L402 invoice="{INV_A}"'], "missing_macaroon"),
        ([f'L402 macaroon="{MAC_A}", token="{MAC_B}", invoice="{INV_A}"'], "conflicting_macaroon"),
        ([f'L402 macaroon="{MAC_A}", invoice="{INV_A}", amount_msats="10k"'], "invalid_amount"),
        ([f'L402 macaroon="{MAC_A}", invoice="{INV_A}", amount_msats="-5"'], "invalid_amount"),
        (['Basic realm="x"'], "no_l402_challenge"),
        ([], "no_l402_challenge"),
        (
            [
                f'L402 macaroon="{MAC_A}", invoice="{INV_A}"',
                f'L402 macaroon="{MAC_B}", invoice="{INV_B}"',
            ],
            "duplicate_challenge",
        ),
        ([f'L402 macaroon="{MAC_A}" invoice="{INV_A}"'], "malformed_header"),
        (["L402 sometoken68=="], "missing_macaroon"),
        (['="x"'], "malformed_header"),
    ],
)
def test_strict_refusals(values: list[str], code: str) -> None:
    with pytest.raises(ChallengeError) as info:
        parse_challenge(values)
    assert info.value.code == code


def test_broken_l402_is_not_silently_replaced_by_lsat() -> None:
    with pytest.raises(ChallengeError) as info:
        parse_challenge([f'LSAT macaroon="{MAC_A}", invoice="{INV_A}"', f'L402 macaroon="{MAC_B}"'])
    assert info.value.code == "missing_invoice"
