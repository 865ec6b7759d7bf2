"""Bundle terms, request estimates, the charge rules and the balance header."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.metering import (
    ESTIMATE_BODY_LIMIT,
    BundleTerms,
    ChargeBasis,
    EstimateProblem,
    EstimateSource,
    TailCollector,
    TermsError,
    UsageProblem,
    UsageReading,
    UsageSource,
    decide_charge,
    estimate_request,
    format_balance,
    parse_balance,
    parse_bundle,
    read_usage,
)

from .streams import chat_json, chat_stream

TOKENS = parse_bundle({"units": 1_000_000, "unit": "tokens", "price_sats": 2000})


# --- terms -----------------------------------------------------------------------------


def test_token_bundle_defaults() -> None:
    assert (
        BundleTerms(
            units=1_000_000,
            unit="tokens",
            price_msat=2_000_000,
            estimate=4096,
            estimate_from_body=True,
            usage_header=None,
            tail_bytes=16384,
        )
        == TOKENS
    )
    assert TOKENS.reads_tail
    assert not TOKENS.counted


def test_other_units() -> None:
    calls = parse_bundle({"units": 100, "unit": "requests", "price_msats": 5000})
    assert (calls.estimate, calls.estimate_from_body, calls.counted) == (1, False, True)
    images = parse_bundle(
        {"units": 50, "unit": "images", "price_sats": 10, "usage_header": "X-Images", "estimate": 1}
    )
    assert images.usage_header == "x-images"
    assert not images.reads_tail


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"unit": "tokens", "price_sats": 1}, "units"),
        ({"units": 0, "unit": "tokens", "price_sats": 1}, "units"),
        ({"units": True, "unit": "tokens", "price_sats": 1}, "units"),
        ({"units": 1, "unit": "Tokens!", "price_sats": 1}, "unit"),
        ({"units": 1, "unit": "msat", "price_sats": 1}, "unit"),
        ({"units": 1, "unit": "tokens"}, "price_sats"),
        ({"units": 1, "unit": "tokens", "price_sats": 1, "price_msats": 1000}, "price_sats"),
        ({"units": 1, "unit": "images", "price_sats": 1, "estimate": 1}, "usage_header"),
        ({"units": 1, "unit": "bytes", "price_sats": 1, "usage_header": "X-B"}, "usage_header"),
        ({"units": 1, "unit": "bytes", "price_sats": 1}, "estimate"),
        ({"units": 1, "unit": "requests", "price_sats": 1, "estimate": 2}, "estimate"),
        (
            {
                "units": 1,
                "unit": "bytes",
                "price_sats": 1,
                "estimate": 9,
                "estimate_from": "max_tokens",
            },
            "estimate_from",
        ),
        ({"units": 1, "unit": "tokens", "price_sats": 1, "tail_bytes": 10}, "tail_bytes"),
        ({"units": 1, "unit": "tokens", "price_sats": 1, "size": 3}, "size"),
    ],
)
def test_terms_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(TermsError) as info:
        parse_bundle(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"bundle.{field}: ")


# --- estimates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "units", "source", "problem"),
    [
        ({"max_tokens": 300}, 300, EstimateSource.BODY, None),
        ({"max_completion_tokens": 500}, 500, EstimateSource.BODY, None),
        ({"max_tokens": 300, "max_completion_tokens": 200}, 300, EstimateSource.BODY, None),
        ({"max_tokens": None, "max_completion_tokens": 200}, 200, EstimateSource.BODY, None),
        ({"messages": []}, 4096, EstimateSource.DEFAULT, EstimateProblem.NO_CEILING),
        ({"max_tokens": 0}, 4096, EstimateSource.DEFAULT, EstimateProblem.BAD_CEILING),
        ({"max_tokens": -5}, 4096, EstimateSource.DEFAULT, EstimateProblem.BAD_CEILING),
        ({"max_tokens": "300"}, 4096, EstimateSource.DEFAULT, EstimateProblem.BAD_CEILING),
        ({"max_tokens": 30.5}, 4096, EstimateSource.DEFAULT, EstimateProblem.BAD_CEILING),
        ([1, 2], 4096, EstimateSource.DEFAULT, EstimateProblem.NOT_JSON),
    ],
)
def test_estimate_from_the_body(
    body: object, units: int, source: EstimateSource, problem: EstimateProblem | None
) -> None:
    estimate = estimate_request(TOKENS, json.dumps(body).encode(), complete=True)
    assert (estimate.units, estimate.source, estimate.problem) == (units, source, problem)


def test_estimate_bounds() -> None:
    assert estimate_request(TOKENS, None, complete=True).problem is EstimateProblem.NO_BODY
    assert estimate_request(TOKENS, b"{not json", complete=True).problem is EstimateProblem.NOT_JSON
    assert (
        estimate_request(TOKENS, b"[" * 100_000, complete=True).problem is EstimateProblem.NOT_JSON
    )
    head = b'{"max_tokens": 7, "messages": ["'
    assert estimate_request(TOKENS, head, complete=False).problem is EstimateProblem.TOO_LARGE
    big = b'{"max_tokens": 7, "pad": "' + b"x" * ESTIMATE_BODY_LIMIT + b'"}'
    assert estimate_request(TOKENS, big, complete=True).problem is EstimateProblem.TOO_LARGE
    fixed = parse_bundle(
        {"units": 10, "unit": "tokens", "price_sats": 1, "estimate_from": "none", "estimate": 50}
    )
    assert estimate_request(fixed, b'{"max_tokens": 7}', complete=True).units == 50


# --- charges ---------------------------------------------------------------------------


def charge(
    terms: BundleTerms,
    reading: UsageReading | None,
    *,
    status: int | None = 200,
    complete: bool = True,
    body_bytes: int = 100,
    reserved: int = 300,
    estimate: int = 400,
) -> tuple[int, ChargeBasis]:
    c = decide_charge(
        terms,
        reading,
        status=status,
        complete=complete,
        body_bytes=body_bytes,
        reserved=reserved,
        estimate=estimate,
    )
    return c.units, c.basis


MISSING = UsageReading.none(UsageProblem.MISSING)
MALFORMED = UsageReading.none(UsageProblem.MALFORMED)


def test_charge_rules_for_tokens() -> None:
    assert charge(TOKENS, UsageReading.found(57, UsageSource.SSE)) == (57, ChargeBasis.USAGE)
    assert charge(TOKENS, UsageReading.found(57, UsageSource.SSE), status=500) == (
        57,
        ChargeBasis.USAGE,
    )
    assert charge(TOKENS, MISSING) == (400, ChargeBasis.ESTIMATE)
    assert charge(TOKENS, MALFORMED) == (400, ChargeBasis.ESTIMATE)
    assert charge(TOKENS, MISSING, complete=False) == (300, ChargeBasis.RESERVATION)
    assert charge(TOKENS, MISSING, complete=False, body_bytes=0) == (0, ChargeBasis.NOTHING)
    assert charge(TOKENS, MISSING, status=400) == (0, ChargeBasis.NOTHING)
    assert charge(TOKENS, MISSING, status=503) == (0, ChargeBasis.NOTHING)
    assert charge(TOKENS, None, status=None) == (0, ChargeBasis.NOTHING)
    malformed = decide_charge(
        TOKENS, MALFORMED, status=200, complete=True, body_bytes=9, reserved=1, estimate=2
    )
    assert malformed.problem is UsageProblem.MALFORMED


def test_charge_rules_for_counted_units() -> None:
    calls = parse_bundle({"units": 100, "unit": "requests", "price_sats": 1})
    assert charge(calls, None, status=200) == (1, ChargeBasis.COUNTED)
    assert charge(calls, None, status=499) == (1, ChargeBasis.COUNTED)
    assert charge(calls, None, status=500) == (0, ChargeBasis.NOTHING)
    assert charge(calls, None, status=None) == (0, ChargeBasis.NOTHING)
    size = parse_bundle({"units": 10**9, "unit": "bytes", "price_sats": 1, "estimate": 10**6})
    assert charge(size, None, body_bytes=12345, complete=False) == (12345, ChargeBasis.COUNTED)


def test_read_usage_follows_the_terms() -> None:
    tail = TailCollector(TOKENS.tail_bytes)
    tail.feed(chat_stream(["a"], 3, 4))
    reading = read_usage(TOKENS, tail=tail, content_type="text/event-stream", content_encoding=None)
    assert reading is not None
    assert reading.units == 7
    header = parse_bundle({"units": 9, "unit": "tokens", "price_sats": 1, "usage_header": "X-U"})
    by_header = read_usage(
        header, tail=None, content_type=None, content_encoding=None, header_values=["11"]
    )
    assert by_header is not None
    assert by_header.units == 11
    calls = parse_bundle({"units": 100, "unit": "requests", "price_sats": 1})
    assert read_usage(calls, tail=None, content_type=None, content_encoding=None) is None
    json_tail = TailCollector(256)
    json_tail.feed(chat_json(["y" * 1000], 1, 1))
    assert read_usage(
        TOKENS, tail=json_tail, content_type="application/json", content_encoding="identity"
    ) == UsageReading.found(2, UsageSource.JSON_TAIL)


# --- the balance header ----------------------------------------------------------------


@given(
    available=st.integers(0, 10**15 - 1),
    reserved=st.none() | st.integers(0, 10**15 - 1),
    unit=st.sampled_from(["tokens", "requests", "bytes", "msat", "images"]),
)
def test_balance_header_round_trip(available: int, reserved: int | None, unit: str) -> None:
    report = parse_balance(format_balance(available, unit, reserved))
    assert report == (available, unit, reserved)


def test_balance_header_format_and_refusals() -> None:
    assert format_balance(995904, "tokens", 4096) == "995904;unit=tokens;reserved=4096"
    assert format_balance(-3, "tokens") == "0;unit=tokens"
    assert format_balance(10**20, "msat") == "999999999999999;unit=msat"
    with pytest.raises(ValueError, match="token"):
        format_balance(1, "two words")
    for bad in (
        "x;unit=tokens",
        "-1;unit=tokens",
        "5",
        "5;unit=tokens;unit=bytes",
        "5;unit=tokens;spare=1",
        "5;unit=tokens;reserved=-2",
        "5;unit=9x",
    ):
        with pytest.raises(ValueError, match="L402-Balance"):
            parse_balance(bad)
