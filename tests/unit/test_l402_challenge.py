"""Challenge headers, JSON body and the gRPC trailers-only form."""

from __future__ import annotations

import pytest

from gateway.l402 import challenge

MAC = "AgEEbHNhdA=="
INVOICE = "lnbcrt100n1pjexample"


def test_headers_exact_strings_lsat_first() -> None:
    assert challenge.headers(MAC, INVOICE, 10_000) == [
        (
            "WWW-Authenticate",
            'LSAT macaroon="AgEEbHNhdA==", invoice="lnbcrt100n1pjexample", amount_msats="10000"',
        ),
        (
            "WWW-Authenticate",
            'L402 macaroon="AgEEbHNhdA==", invoice="lnbcrt100n1pjexample", amount_msats="10000"',
        ),
    ]


@pytest.mark.parametrize("bad", ['a"b', "a\r\nX-Evil: 1", "a b", ""])
def test_headers_refuse_values_that_break_the_header(bad: str) -> None:
    with pytest.raises(ValueError, match="macaroon"):
        challenge.headers(bad, INVOICE, 1)
    with pytest.raises(ValueError, match="invoice"):
        challenge.headers(MAC, bad, 1)


def test_headers_refuse_non_positive_amount() -> None:
    with pytest.raises(ValueError, match="amount"):
        challenge.headers(MAC, INVOICE, 0)


def test_body() -> None:
    assert challenge.body("premium", 10_000, INVOICE, MAC, "ab" * 32, 1_700_000_600) == {
        "error": "payment_required",
        "route": "premium",
        "price_msats": 10_000,
        "invoice": INVOICE,
        "macaroon": MAC,
        "payment_hash": "ab" * 32,
        "expires_at": 1_700_000_600,
    }


def test_grpc_headers() -> None:
    got = challenge.grpc_headers(MAC, INVOICE, 250_000)
    assert got[:3] == [
        ("content-type", "application/grpc"),
        ("grpc-status", "13"),
        ("grpc-message", "payment required"),
    ]
    assert got[3:] == challenge.headers(MAC, INVOICE, 250_000)
    assert [v.split(" ", 1)[0] for _, v in got[3:]] == ["LSAT", "L402"]
