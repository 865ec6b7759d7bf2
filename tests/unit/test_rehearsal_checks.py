"""The rehearsal's outcome checks catch each way a run can differ from production's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.rehearsal.checks import SUMMARY_KEYS, check_metrics, check_summary


def _good() -> dict[str, Any]:
    section: dict[str, dict[str, Any]] = {k: dict.fromkeys(v, 0) for k, v in SUMMARY_KEYS.items()}
    section["openAgentsRoute"].update(
        challengeStatusCode=402,
        paidStatusCode=200,
        paidAmountMsats=10_000,
        payloadSource="openagents.ep212",
        payloadTier="under-cap",
        repeatStatusCode=200,
        repeatCacheHit=True,
        repeatPaid=False,
        payerCallsAfterPaid=3,
        payerCallsAfterRepeat=3,
        proofReference="preimage:0123456789abcdef",
    )
    section["overCap"].update(
        challengeStatusCode=402,
        quotedAmountMsats=250_000,
        maxSpendMsats=100_000,
        blocked=True,
        denyReasonCode="amount_over_cap",
        payerCallsBefore=3,
        payerCallsAfter=3,
    )
    section["sats4ai"].update(
        challengeStatusCode=402,
        firstPaid=True,
        firstAmountMsats=42_000,
        secondPaid=False,
        cacheHit=True,
        payerCallsAfterFirst=1,
        payerCallsAfterSecond=1,
    )
    section["sats4aiBundle"].update(
        unit="tokens",
        bundleUnits=92,
        completions=[{}] * 6,
        completionsOnFirstBundle=4,
        payments=2,
        paidMsats=84_000,
        unitsBought=184,
        unitsUsed=138,
    )
    section["paymentScheme"] = {
        "charge": {
            "scheme": "payment",
            "challengeStatusCode": 402,
            "paidStatusCode": 200,
            "paidAmountMsats": 10_000,
            "receipt": {"status": "success"},
        },
        "session": {
            "unitSats": 1,
            "deposits": [{"depositSats": 20}, {"depositSats": 20}],
            "depositedSats": 40,
            "debits": {"requests": 1, "served": 1, "debitedSats": 23, "streams": 1},
            "refund": {"refundSats": 17, "refundStatus": "succeeded"},
        },
    }
    return {"ok": True, "mode": "regtest", **section}


def test_good_summary_passes() -> None:
    assert check_summary(_good()) == []


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("openAgentsRoute.paidAmountMsats", 1_000, "paidAmountMsats"),
        ("openAgentsRoute.repeatCacheHit", False, "repeatCacheHit"),
        ("openAgentsRoute.payerCallsAfterRepeat", 4, "payerCallsAfterRepeat"),
        ("openAgentsRoute.payloadSource", "elsewhere", "payloadSource"),
        ("openAgentsRoute.proofReference", "preimage:" + "ab" * 32, "proofReference"),
        ("overCap.blocked", False, "blocked"),
        ("overCap.denyReasonCode", "amount_unknown", "denyReasonCode"),
        ("overCap.payerCallsAfter", 4, "payerCallsAfter"),
        ("sats4ai.cacheHit", False, "cacheHit"),
        ("sats4ai.payerCallsAfterSecond", 2, "payerCallsAfterSecond"),
        ("sats4aiBundle.payments", 1, "payments"),
        ("sats4aiBundle.unitsUsed", 161, "unitsUsed"),
        ("sats4aiBundle.completionsOnFirstBundle", 5, "completionsOnFirstBundle"),
        ("ok", False, "ok"),
        ("paymentScheme.charge.paidStatusCode", 402, "paidStatusCode"),
        ("paymentScheme.session.refund.refundStatus", "failed", "refundStatus"),
        ("paymentScheme.session.refund.refundSats", 40, "refundSats"),
    ],
)
def test_each_difference_is_reported(path: str, value: Any, needle: str) -> None:
    summary = copy.deepcopy(_good())
    *parents, leaf = path.split(".")
    node = summary
    for p in parents:
        node = node[p]
    node[leaf] = value
    problems = check_summary(summary)
    assert len(problems) == 1
    assert needle in problems[0]


def test_missing_fields_are_named() -> None:
    summary = _good()
    del summary["sats4ai"]["firstPaymentId"]
    assert any("firstPaymentId" in p for p in check_summary(summary))


def test_metrics_must_match_payments() -> None:
    summary = _good()
    tokens = 'route="sats4ai-text-generation",unit="tokens"'
    metrics = {
        'l402_revenue_msats_total{route="ep212-premium-signal"}': 20_000.0,
        'l402_revenue_msats_total{route="sats4ai-text-generation"}': 84_000.0,
        'l402_revenue_msats_total{route="ep212-expensive-signal"}': 0.0,
        'l402_paid_requests_total{route="ep212-premium-signal"}': 3.0,
        'l402_scheme_paid_requests_total{route="ep212-premium-signal",scheme="l402"}': 2.0,
        'l402_scheme_paid_requests_total{route="ep212-premium-signal",scheme="charge"}': 1.0,
        'l402_scheme_paid_requests_total{route="payment-text-generation",scheme="session"}': 1.0,
        'l402_session_deposits_msats_total{route="payment-text-generation"}': 40_000.0,
        'l402_session_refunds_total{result="succeeded",route="payment-text-generation"}': 1.0,
        'l402_session_refunds_total{result="failed",route="payment-text-generation"}': 0.0,
        'l402_session_refunded_msats_total{route="payment-text-generation"}': 17_000.0,
        'l402_paid_requests_total{route="sats4ai-text-generation"}': 6.0,
        f"l402_meter_units_sold_total{{{tokens}}}": 184.0,
        f"l402_meter_units_served_total{{{tokens}}}": 138.0,
        'l402_challenges_issued_total{route="ep212-expensive-signal"}': 1.0,
    }
    assert check_metrics(metrics, summary) == []
    metrics['l402_revenue_msats_total{route="ep212-premium-signal"}'] = 10_000.0
    assert len(check_metrics(metrics, summary)) == 1
    # The seller refunded other than the buyer received.
    metrics['l402_revenue_msats_total{route="ep212-premium-signal"}'] = 20_000.0
    metrics['l402_session_refunded_msats_total{route="payment-text-generation"}'] = 18_000.0
    (problem,) = check_metrics(metrics, summary)
    assert "l402_session_refunded_msats_total" in problem
    metrics['l402_session_refunded_msats_total{route="payment-text-generation"}'] = 17_000.0
    # The seller served more units than the buyer saw used: a difference in the books.
    metrics[f"l402_meter_units_served_total{{{tokens}}}"] = 161.0
    (problem,) = check_metrics(metrics, summary)
    assert "l402_meter_units_served_total" in problem
