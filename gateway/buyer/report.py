"""What the CLI reports, built so that no secret can reach the terminal.

- A 401 or 402 answer's body is never shown (text or `--json`): this
  gateway's challenge body, like most sellers', carries the macaroon and the
  invoice. A refusal is reported as its quote instead: reason code, host,
  amount, cap.
- Payments are identified by `preimage:<16 hex>` proof references only.
- Error text is scrubbed as a last line of defence: buyer errors are written
  secret-free, but an unexpected exception's message is not ours, so
  anything shaped like a serialized macaroon (V2 starts with bytes 02 01:
  base64 `AgE...`, hex `0201...`) or a 64-hex preimage is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.buyer.bundles import balance_json
from gateway.buyer.client import FetchResult
from gateway.buyer.errors import PaymentError

WITHHELD_STATUSES = frozenset({401, 402})
_SECRET_SHAPES = re.compile(
    r"AgE[A-Za-z0-9+/_-]{16,}={0,2}"  # a V2 macaroon, std or URL-safe base64
    r"|(?<![0-9A-Fa-f])0201[0-9A-Fa-f]{32,}"  # a V2 macaroon in hex
    r"|(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])"  # a preimage (or any 32-byte hex)
)

# What an operator can do about an error, by code.
_HINTS = {
    "insecure_permissions": "fix it (chmod 600 the file, or remove it) or run with --no-cache",
    "corrupt_cache": "move the file aside or run with --no-cache",
    "cache_unusable": "pass --cache FILE somewhere writable, or --no-cache",
}


def scrub(text: str) -> str:
    """`text` with anything shaped like a macaroon or preimage replaced by `[redacted]`."""
    return _SECRET_SHAPES.sub("[redacted]", text)


def failure(code: str, message: str) -> dict[str, Any]:
    """The `{"ok": false}` contract for a run that did not get as far as a result."""
    hint = _HINTS.get(code)
    text = scrub(f"{code}: {message}" + (f" ({hint})" if hint else ""))
    return {"ok": False, "code": code, "error": text}


def fetch_report(result: FetchResult, host: str) -> dict[str, Any]:
    """The `--json` report of one fetch; `body` is None when it is withheld."""
    denied, payment, error = result.denied, result.payment, result.error
    spent = error.spent_msats if isinstance(error, PaymentError) and not payment else None
    withheld = result.status in WITHHELD_STATUSES
    return {
        "ok": result.ok,
        "status": result.status,
        "outcome": result.outcome.value,
        "paid": result.paid,
        "cacheStatus": result.cache_status.value,
        "scheme": result.scheme.value,
        "receiptReference": result.receipt.reference if result.receipt else None,
        "host": denied.host if denied else host,
        "quoteMsats": result.quote_msats,
        "capMsats": denied.cap_msats if denied else None,
        "amountMsats": payment.amount_msats if payment else None,
        "paymentId": payment.payment_id if payment else None,
        "proofReference": payment.proof_reference if payment else None,
        "denyReasonCode": denied.reason_code.value if denied and denied.reason_code else None,
        "denyDetail": denied.detail if denied and denied.detail else None,
        "spentMsats": spent,  # a failed payment that may still have cost this much
        "errorCode": error.code if error else None,
        "error": scrub(str(error)) if error else None,
        "cacheError": scrub(str(result.cache_error)) if result.cache_error else None,
        "balance": balance_json(result.balance),  # a metered seller's L402-Balance
        "bundleExhausted": result.exhausted,  # the cached bundle ran dry: a new one was bought
        "bodyWithheld": withheld,
        "body": None if withheld else result.body.decode("utf-8", errors="replace"),
    }


def fetch_summary(report: Mapping[str, Any]) -> list[str]:
    """The text-mode lines for stderr (the body, when shown, went to stdout)."""
    status, outcome = report["status"], report["outcome"]
    proof = f" ({report['proofReference']})" if report["proofReference"] else ""
    lines: list[str] = []
    if report["denyReasonCode"]:
        quote = report["quoteMsats"]
        facts = [f"host {report['host']}"]
        facts.append(f"quote {quote} msat" if quote is not None else "quote unknown")
        facts.append(f"cap {report['capMsats']} msat")
        detail = f": {report['denyDetail']}" if report["denyDetail"] else ""
        lines.append(
            f"l402-buyer: not paid ({status} {outcome}): {report['denyReasonCode']}{detail} "
            f"[{', '.join(facts)}]"
        )
    elif report["error"]:
        spent = report["spentMsats"]
        cost = f" (may have cost up to {spent} msat)" if spent is not None else ""
        lines.append(f"l402-buyer: {status} {outcome}: {report['error']}{proof}{cost}")
    else:
        paid = f" {report['amountMsats']} msat" if report["paid"] else ""
        lines.append(f"l402-buyer: {status} {outcome}{paid}{proof} (cache {report['cacheStatus']})")
    balance = report.get("balance")
    if balance is not None:
        held = f", {balance['reserved']} held by this request" if balance["reserved"] else ""
        dry = (
            " (the last bundle ran dry; a new one was bought)" if report["bundleExhausted"] else ""
        )
        lines.append(
            f"l402-buyer: bundle: {balance['available']} {balance['unit']} left{held}{dry}"
        )
    if report["bodyWithheld"] and not report["denyReasonCode"]:
        lines.append(f"l402-buyer: the {status} body is not shown (it carries a challenge)")
    if report["cacheError"]:
        lines.append(
            f"l402-buyer: warning: credential kept for this run only: {report['cacheError']}"
        )
    return lines


def ep212_summary(summary: Mapping[str, Any]) -> str:
    s, a, b = summary["sats4ai"], summary["openAgentsRoute"], summary["overCap"]
    return "\n".join(
        [
            f"EP212 {summary['mode']} run {summary['requestId']} "
            f"via {summary['walletBackend']}: OK",
            f"  sats4ai: paid {s['firstAmountMsats']} msat ({s['firstProofReference']}), "
            f"repeat cacheHit={str(s['cacheHit']).lower()} (payer calls "
            f"{s['payerCallsAfterFirst']} -> {s['payerCallsAfterSecond']})",
            f"  route A: paid {a['paidAmountMsats']} msat ({a['proofReference']}), "
            f"repeat {a['repeatCacheStatus']} with no new payment",
            f"  route B: quoted {b['quotedAmountMsats']} msat, blocked {b['denyReasonCode']} "
            f"(cap {b['maxSpendMsats']}), payer calls {b['payerCallsBefore']} -> "
            f"{b['payerCallsAfter']}",
            f"  artifacts: {summary['artifacts']['summaryPath']}, "
            f"{summary['artifacts']['eventsPath']}",
        ]
    )
