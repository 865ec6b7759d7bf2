"""Spend policy: each check, and that the first failing check in order wins."""

from __future__ import annotations

import pytest

from gateway.buyer.invoice import DecodedInvoice, Quote
from gateway.buyer.policy import DenyReason, SpendPolicy

NOW = 1_771_000_000
HASH = bytes(range(32))
OTHER = bytes(32)


def quote(
    amount: int | None = 10_000,
    *,
    network: str = "bcrt",
    token_hash: bytes = HASH,
    timestamp: int = NOW,
    expiry: int = 3600,
    advertised: int | None = None,
) -> Quote:
    invoice = DecodedInvoice(
        bolt11="lnbcrt...",
        network=network,
        amount_msats=amount,
        payment_hash=HASH,
        timestamp=timestamp,
        expiry_seconds=expiry,
        payee="02" + "11" * 32,
        description="test",
    )
    return Quote(invoice, token_hash, advertised)


def policy(**kw: object) -> SpendPolicy:
    kw.setdefault("max_spend_msats", 100_000)
    kw.setdefault("expected_network", "bcrt")
    return SpendPolicy(**kw)  # type: ignore[arg-type]


def test_allows_a_good_quote_up_to_the_cap() -> None:
    decision = policy().evaluate("example.com", quote(100_000), NOW)
    assert decision.allowed
    assert decision.reason_code is None
    assert decision.cap_msats == 100_000


# Each row violates the expected check AND every later one, so only the order decides.
@pytest.mark.parametrize(
    ("kw", "host", "q", "reason"),
    [
        (
            {"blocked_hosts": ["evil.test"], "allowed_hosts": ["good.test"]},
            "EVIL.test.",
            quote(None, token_hash=OTHER, timestamp=0),
            DenyReason.HOST_BLOCKED,
        ),
        (
            {"allowed_hosts": ["good.test"]},
            "other.test",
            quote(None, token_hash=OTHER, timestamp=0),
            DenyReason.HOST_NOT_ALLOWLISTED,
        ),
        ({}, "good.test", quote(None, token_hash=OTHER, timestamp=0), DenyReason.AMOUNT_UNKNOWN),
        (
            {},
            "good.test",
            quote(900_000, token_hash=OTHER, timestamp=0),
            DenyReason.INVOICE_MISMATCH,
        ),
        ({}, "good.test", quote(900_000, network="bc", timestamp=0), DenyReason.INVOICE_MISMATCH),
        (
            {},
            "good.test",
            quote(900_000, advertised=10_000, timestamp=0),
            DenyReason.INVOICE_MISMATCH,
        ),
        (
            {"budget_msats": 1},
            "good.test",
            quote(900_000, timestamp=NOW - 7200),
            DenyReason.INVOICE_EXPIRED,
        ),
        ({"budget_msats": 1}, "good.test", quote(100_001), DenyReason.AMOUNT_OVER_CAP),
        (
            {"per_request_cap_msats": 5_000, "budget_msats": 1},
            "good.test",
            quote(6_000),
            DenyReason.AMOUNT_OVER_CAP,
        ),
        ({"budget_msats": 9_999}, "good.test", quote(10_000), DenyReason.BUDGET_EXHAUSTED),
    ],
)
def test_order(kw: dict[str, object], host: str, q: Quote, reason: DenyReason) -> None:
    decision = policy(**kw).evaluate(host, q, NOW)
    assert not decision.allowed
    assert decision.reason_code is reason


def test_cap_is_min_of_run_cap_and_per_request_cap() -> None:
    assert policy(per_request_cap_msats=5_000).cap_msats == 5_000
    assert policy(per_request_cap_msats=500_000).cap_msats == 100_000
    assert policy(per_request_cap_msats=5_000).evaluate("h", quote(5_000), NOW).allowed


def test_budget_counts_recorded_spend() -> None:
    p = policy(budget_msats=25_000)
    assert p.evaluate("h", quote(10_000), NOW).allowed
    p.record_spend(10_000)
    p.record_spend(10_000)
    assert p.budget_remaining_msats == 5_000
    decision = p.evaluate("h", quote(10_000), NOW)
    assert decision.reason_code is DenyReason.BUDGET_EXHAUSTED
    assert decision.budget_remaining_msats == 5_000


def test_wildcard_allowlist_matches_subdomains_only() -> None:
    p = policy(allowed_hosts=["*.example.com"])
    assert p.check_host("api.example.com").allowed
    assert p.check_host("example.com").reason_code is DenyReason.HOST_NOT_ALLOWLISTED
    assert p.check_host("badexample.com").reason_code is DenyReason.HOST_NOT_ALLOWLISTED


def test_no_expected_network_accepts_any() -> None:
    p = SpendPolicy(max_spend_msats=100_000)
    assert p.evaluate("h", quote(1_000, network="bc"), NOW).allowed


def test_expired_exactly_at_expiry() -> None:
    q = quote(1_000, timestamp=NOW - 3600, expiry=3600)
    assert policy().evaluate("h", q, NOW).reason_code is DenyReason.INVOICE_EXPIRED
    assert policy().evaluate("h", q, NOW - 1).allowed
