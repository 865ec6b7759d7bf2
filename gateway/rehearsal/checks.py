"""What a successful EP212 rehearsal must show, compared field by field.

Each check names the summary.json path it reads, so a failed rehearsal says
exactly which outcome differed from the production run it reproduces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROUTE_A_MSATS = 10_000
ROUTE_B_MSATS = 250_000
SATS4AI_MSATS = 42_000
CAP_MSATS = 100_000

SUMMARY_KEYS = {
    "sats4ai": {
        "endpointUrl",
        "challengeStatusCode",
        "firstStatusCode",
        "firstPaid",
        "firstPaymentId",
        "firstAmountMsats",
        "firstProofReference",
        "firstCacheStatus",
        "firstResponseBytes",
        "firstResponseSha256",
        "secondStatusCode",
        "secondPaid",
        "secondCacheStatus",
        "cacheHit",
        "payerCallsAfterFirst",
        "payerCallsAfterSecond",
    },
    "openAgentsRoute": {
        "endpointUrl",
        "challengeStatusCode",
        "paidStatusCode",
        "paidAmountMsats",
        "paymentId",
        "proofReference",
        "responseBytes",
        "responseSha256",
    },
    "overCap": {
        "endpointUrl",
        "challengeStatusCode",
        "quotedAmountMsats",
        "maxSpendMsats",
        "blocked",
        "denyReasonCode",
        "payerCallsBefore",
        "payerCallsAfter",
    },
}


def _get(summary: Mapping[str, Any], path: str) -> Any:
    node: Any = summary
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def check_summary(summary: Mapping[str, Any]) -> list[str]:
    """Differences between summary.json and the expected rehearsal outcome (empty = pass)."""
    problems: list[str] = []
    for section, keys in SUMMARY_KEYS.items():
        missing = keys - set(summary.get(section, {}))
        if missing:
            problems.append(f"{section}: missing fields {sorted(missing)}")

    def expect(path: str, want: Any) -> None:
        got = _get(summary, path)
        if got != want:
            problems.append(f"{path}: expected {want!r}, got {got!r}")

    expect("ok", True)
    expect("mode", "regtest")
    # Route A: paid 10 sats, served the signal payload, repeat is a free cache hit.
    expect("openAgentsRoute.challengeStatusCode", 402)
    expect("openAgentsRoute.paidStatusCode", 200)
    expect("openAgentsRoute.paidAmountMsats", ROUTE_A_MSATS)
    expect("openAgentsRoute.payloadSource", "openagents.ep212")
    expect("openAgentsRoute.payloadTier", "under-cap")
    expect("openAgentsRoute.repeatStatusCode", 200)
    expect("openAgentsRoute.repeatCacheHit", True)
    expect("openAgentsRoute.repeatPaid", False)
    expect(
        "openAgentsRoute.payerCallsAfterRepeat",
        _get(summary, "openAgentsRoute.payerCallsAfterPaid"),
    )
    proof = _get(summary, "openAgentsRoute.proofReference") or ""
    if not (proof.startswith("preimage:") and len(proof) == len("preimage:") + 16):
        problems.append(f"openAgentsRoute.proofReference: not preimage:<16 hex>: {proof!r}")
    # Route B: quoted 250 sats, blocked before paying against the 100 sat cap.
    expect("overCap.challengeStatusCode", 402)
    expect("overCap.quotedAmountMsats", ROUTE_B_MSATS)
    expect("overCap.maxSpendMsats", CAP_MSATS)
    expect("overCap.blocked", True)
    expect("overCap.denyReasonCode", "amount_over_cap")
    expect("overCap.payerCallsAfter", _get(summary, "overCap.payerCallsBefore"))
    # The per-request seller (sats4ai stand-in) demands a second payment.
    expect("sats4ai.challengeStatusCode", 402)
    expect("sats4ai.firstPaid", True)
    expect("sats4ai.firstAmountMsats", SATS4AI_MSATS)
    expect("sats4ai.secondPaid", True)
    expect("sats4ai.cacheHit", False)
    first_calls = _get(summary, "sats4ai.payerCallsAfterFirst")
    if isinstance(first_calls, int):
        expect("sats4ai.payerCallsAfterSecond", first_calls + 1)
    return problems


def check_metrics(metrics: Mapping[str, float]) -> list[str]:
    """The seller's own books must agree with what the buyer paid."""
    problems = []
    want = {
        'l402_revenue_msats_total{route="ep212-premium-signal"}': ROUTE_A_MSATS,
        'l402_revenue_msats_total{route="sats4ai-text-generation"}': 2 * SATS4AI_MSATS,
        'l402_revenue_msats_total{route="ep212-expensive-signal"}': 0,
        'l402_paid_requests_total{route="ep212-premium-signal"}': 2,
        'l402_paid_requests_total{route="sats4ai-text-generation"}': 2,
        'l402_tokens_consumed_total{route="sats4ai-text-generation"}': 2,
        'l402_challenges_issued_total{route="ep212-expensive-signal"}': 1,
    }
    for name, value in want.items():
        got = metrics.get(name)
        if got != value:
            problems.append(f"metrics {name}: expected {value}, got {got}")
    return problems
