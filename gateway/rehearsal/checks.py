"""What a successful EP212 rehearsal must show, compared field by field.

Each check names the summary.json path it reads, so a failed rehearsal says
exactly which outcome differed from the production run it reproduces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROUTE_A_MSATS = 10_000
ROUTE_B_MSATS = 250_000
SATS4AI_MSATS = 42_000  # one bundle of SATS4AI_BUNDLE_TOKENS
CAP_MSATS = 100_000
# The sats4ai stand-in sells bundles of 92 tokens; each completion the buyer asks for
# uses 23 (3 prompt words + max_tokens 20, the demo upstream's usage): 4 per bundle.
SATS4AI_BUNDLE_TOKENS = 92
SATS4AI_COMPLETION_TOKENS = 23
SATS4AI_ROUTE = "sats4ai-text-generation"
# The Payment-scheme step: a charge on route A, a session on the Payment-only text route
# (1 sat per streamed event, deposits of 20 x 1 sat); the buyer's deposit cap.
SESSION_ROUTE = "payment-text-generation"
SESSION_DEPOSIT_SATS = 20
MAX_DEPOSIT_MSATS = 50_000

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
    "sats4aiBundle": {
        "unit",
        "bundleUnits",
        "completions",
        "completionsOnFirstBundle",
        "payments",
        "paidMsats",
        "unitsBought",
        "unitsUsed",
        "payerCalls",
    },
    "paymentScheme": {"charge", "session"},
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
    # The metered seller (sats4ai stand-in): the second completion rides the same bundle.
    expect("sats4ai.challengeStatusCode", 402)
    expect("sats4ai.firstPaid", True)
    expect("sats4ai.firstAmountMsats", SATS4AI_MSATS)
    expect("sats4ai.secondPaid", False)
    expect("sats4ai.cacheHit", True)
    expect("sats4ai.payerCallsAfterSecond", _get(summary, "sats4ai.payerCallsAfterFirst"))
    # Drawn down to its end, then a second payment and a completion on the new bundle.
    per_bundle = SATS4AI_BUNDLE_TOKENS // SATS4AI_COMPLETION_TOKENS
    expect("sats4aiBundle.unit", "tokens")
    expect("sats4aiBundle.bundleUnits", SATS4AI_BUNDLE_TOKENS)
    expect("sats4aiBundle.completionsOnFirstBundle", per_bundle)
    expect("sats4aiBundle.payments", 2)
    expect("sats4aiBundle.paidMsats", 2 * SATS4AI_MSATS)
    expect("sats4aiBundle.unitsBought", 2 * SATS4AI_BUNDLE_TOKENS)
    expect("sats4aiBundle.unitsUsed", (per_bundle + 2) * SATS4AI_COMPLETION_TOKENS)
    problems += _check_payment(summary, expect)
    return problems


def _check_payment(summary: Mapping[str, Any], expect: Any) -> list[str]:
    """The Payment-scheme step: one charge bought route A, one session streamed, closed,
    and was refunded what it did not spend."""
    problems = []
    expect("paymentScheme.charge.scheme", "payment")
    expect("paymentScheme.charge.challengeStatusCode", 402)
    expect("paymentScheme.charge.paidStatusCode", 200)
    expect("paymentScheme.charge.paidAmountMsats", ROUTE_A_MSATS)
    if not _get(summary, "paymentScheme.charge.receipt"):
        problems.append("paymentScheme.charge.receipt: no Payment-Receipt")
    expect("paymentScheme.session.unitSats", 1)
    expect("paymentScheme.session.debits.served", 1)
    expect("paymentScheme.session.debits.streams", 1)
    expect("paymentScheme.session.refund.refundStatus", "succeeded")
    deposits = _get(summary, "paymentScheme.session.deposits") or []
    if not deposits or any(d.get("depositSats") != SESSION_DEPOSIT_SATS for d in deposits):
        problems.append(f"paymentScheme.session.deposits: not {SESSION_DEPOSIT_SATS} sat each")
    deposited = _get(summary, "paymentScheme.session.depositedSats") or 0
    debited = _get(summary, "paymentScheme.session.debits.debitedSats") or 0
    if not 0 < debited <= deposited:
        problems.append(f"paymentScheme.session: debited {debited} of {deposited} sat")
    expect("paymentScheme.session.refund.refundSats", deposited - debited)
    return problems


def check_metrics(metrics: Mapping[str, float], summary: Mapping[str, Any]) -> list[str]:
    """The seller's own books must agree with what the buyer paid, bought and used."""
    problems = []
    bundle = summary.get("sats4aiBundle") or {}
    session = _get(summary, "paymentScheme.session") or {}
    refund = session.get("refund") or {}
    completions = len(bundle.get("completions", []))
    tokens = f'route="{SATS4AI_ROUTE}",unit="tokens"'
    want = {
        # Route A: the L402 token (paid, then a cache hit) and the Payment charge.
        'l402_revenue_msats_total{route="ep212-premium-signal"}': 2 * ROUTE_A_MSATS,
        f'l402_revenue_msats_total{{route="{SATS4AI_ROUTE}"}}': bundle.get("paidMsats"),
        'l402_revenue_msats_total{route="ep212-expensive-signal"}': 0,
        'l402_paid_requests_total{route="ep212-premium-signal"}': 3,
        'l402_scheme_paid_requests_total{route="ep212-premium-signal",scheme="l402"}': 2,
        'l402_scheme_paid_requests_total{route="ep212-premium-signal",scheme="charge"}': 1,
        f'l402_scheme_paid_requests_total{{route="{SESSION_ROUTE}",scheme="session"}}': 1,
        f'l402_session_deposits_msats_total{{route="{SESSION_ROUTE}"}}': 1000
        * session.get("depositedSats", -1),
        f'l402_session_refunds_total{{result="succeeded",route="{SESSION_ROUTE}"}}': 1,
        f'l402_session_refunds_total{{result="failed",route="{SESSION_ROUTE}"}}': 0,
        f'l402_session_refunded_msats_total{{route="{SESSION_ROUTE}"}}': 1000
        * (refund.get("refundSats") or -1),
        f'l402_paid_requests_total{{route="{SATS4AI_ROUTE}"}}': completions,
        f"l402_meter_units_sold_total{{{tokens}}}": bundle.get("unitsBought"),
        f"l402_meter_units_served_total{{{tokens}}}": bundle.get("unitsUsed"),
        'l402_challenges_issued_total{route="ep212-expensive-signal"}': 1,
    }
    for name, value in want.items():
        got = metrics.get(name)
        if got != value:
            problems.append(f"metrics {name}: expected {value}, got {got}")
    return problems
