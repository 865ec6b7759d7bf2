"""EP212 rehearsal runner: the old `smoke:ep212-full-flow` harness, reproduced.

Steps, each one recorded as a stage in `events.jsonl`:
  sats4ai.challenge / sats4ai.first -- POST the text-generation request: 402, pay, 2xx.
  sats4ai.cached -- the same request again: a reusable-token seller answers from the
      cache (cacheHit=true), a pay-per-request seller demands a second payment
      (cacheHit=false). Both pass; the summary says which happened.
  sats4ai.bundle -- only when the seller meters (its answers carry L402-Balance): more
      completions on the same payment until the bundle runs dry, the second payment the
      seller's 402 asks for, and one completion on the new bundle; the summary's
      `sats4aiBundle` says what was bought and used, so the seller's books can be
      compared with the buyer's.
  openagents.route_success -- route A (10 sats): paid, then repeated; the repeat MUST
      be a cache hit with the payer's call count unchanged (recorded as `repeat*`
      fields, additions to the facts' schema, not renames).
  openagents.over_cap_block -- route B (250 sats) must be refused with
      `amount_over_cap` before the payer is called.
  payment.charge / payment.session -- only when the settings name a session URL:
      the Payment scheme's charge on route A and a session (gateway.buyer.ep212_payment).
Each payment gets its own request id (`<run>-<step>`) because wallet executors
use it for idempotency. A step that fails after money moved (e.g. the seller
dropped the connection on the paid retry: `paid_retry_failed`) stops the run
like any failure -- no retry, no second payment -- and its error event carries
the payment's `proofReference`, `paymentId` and `amountMsats`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.buyer.artifacts import Artifacts
from gateway.buyer.cache import CacheStatus, CredentialCache
from gateway.buyer.client import FetchResult, L402Client, Outcome
from gateway.buyer.ep212_payment import PaymentStep
from gateway.buyer.errors import BuyerError, Ep212Error
from gateway.buyer.payers import Payer
from gateway.buyer.policy import DenyReason, SpendPolicy
from gateway.buyer.settings import Ep212Settings
from gateway.metering.jsonusage import usage_from_json
from gateway.metering.sse import usage_from_sse

METERED_STAGES = ("sats4ai.bundle",)  # only against a metered seller (L402-Balance)
STAGES = (
    "sats4ai.challenge",
    "sats4ai.first",
    "sats4ai.cached",
    "sats4ai.bundle",
    "openagents.route_success",
    "openagents.over_cap_block",
)


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _describe(result: FetchResult) -> str:
    text = f"outcome={result.outcome.value} status={result.status}"
    if result.denied is not None and result.denied.reason_code is not None:
        text += f" reason={result.denied.reason_code.value}"
    if result.error is not None:
        text += f" error={result.error.code}"
    if result.payment is not None:
        text += f" paid={result.payment.amount_msats}msat ({result.payment.proof_reference})"
    return text


def _unpaid_code(result: FetchResult, default: str) -> str:
    """`paid_retry_failed` says money moved; any other unpaid outcome keeps its step's code."""
    failed = Outcome.PAID_RETRY_FAILED
    return failed.value if result.outcome is failed else default


class _Run:
    def __init__(
        self, settings: Ep212Settings, client: L402Client, payer: Payer, artifacts: Artifacts
    ) -> None:
        self.settings = settings
        self.client = client
        self.payer = payer
        self.artifacts = artifacts
        self.request_id = settings.request_id or f"ep212-{uuid.uuid4().hex[:12]}"
        self.bundle_calls: list[FetchResult] = []  # the sats4ai completions so far

    def step_id(self, step: str) -> str:
        return f"{self.request_id}-{step}"

    def fail(
        self, stage: str, step: str, code: str, message: str, result: FetchResult | None = None
    ) -> Ep212Error:
        details: dict[str, Any] = {"code": code, "error": message}
        if result is not None:
            details["outcome"] = result.outcome.value
            if result.payment is not None:  # money moved: say which payment
                details["proofReference"] = result.payment.proof_reference
                details["paymentId"] = result.payment.payment_id
                details["amountMsats"] = result.payment.amount_msats
        self.artifacts.event(stage, self.step_id(step), "error", details)
        return Ep212Error(code, f"{stage}: {message}")

    async def fetch(self, stage: str, step: str, method: str, url: str, **kw: Any) -> FetchResult:
        try:
            return await self.client.fetch(method, url, request_id=self.step_id(step), **kw)
        except BuyerError as exc:
            raise self.fail(stage, step, exc.code, exc.message) from None

    async def sats4ai(self) -> dict[str, Any]:
        url, body = self.settings.sats4ai_url, dict(self.settings.sats4ai_body)
        first = await self.fetch("sats4ai.first", "sats4ai-first", "POST", url, json=body)
        calls_after_first = self.payer.calls
        quote = {"endpointUrl": url, "challengeStatusCode": first.challenge_status}
        if first.challenge_status != 402:
            raise self.fail(
                "sats4ai.challenge", "sats4ai-first", "no_challenge", _describe(first), first
            )
        self.artifacts.event(
            "sats4ai.challenge",
            self.step_id("sats4ai-first"),
            "ok",
            {**quote, "quotedAmountMsats": first.quote_msats},
        )
        if first.outcome is not Outcome.PAID or not first.ok or first.payment is None:
            raise self.fail(
                "sats4ai.first",
                "sats4ai-first",
                _unpaid_code(first, "first_not_paid"),
                _describe(first),
                first,
            )
        receipt = first.payment
        first_fields = {
            "firstStatusCode": first.status,
            "firstPaid": first.paid,
            "firstPaymentId": receipt.payment_id,
            "firstAmountMsats": receipt.amount_msats,
            "firstProofReference": receipt.proof_reference,
            "firstCacheStatus": first.cache_status.value,
            "firstResponseBytes": len(first.body),
            "firstResponseSha256": _sha256(first.body),
        }
        self.artifacts.event(
            "sats4ai.first",
            self.step_id("sats4ai-first"),
            "ok",
            {**first_fields, "payerCalls": calls_after_first},
        )
        second = await self.fetch("sats4ai.cached", "sats4ai-second", "POST", url, json=body)
        if not second.ok:
            raise self.fail(
                "sats4ai.cached", "sats4ai-second", "second_failed", _describe(second), second
            )
        cache_hit = second.cache_status is CacheStatus.HIT and not second.paid
        second_fields = {
            "secondStatusCode": second.status,
            "secondPaid": second.paid,
            "secondCacheStatus": second.cache_status.value,
            "cacheHit": cache_hit,
            "payerCallsAfterFirst": calls_after_first,
            "payerCallsAfterSecond": self.payer.calls,
        }
        details: dict[str, Any] = dict(second_fields)
        if second.payment is not None:
            details["proofReference"] = second.payment.proof_reference
            details["amountMsats"] = second.payment.amount_msats
        self.artifacts.event("sats4ai.cached", self.step_id("sats4ai-second"), "ok", details)
        self.bundle_calls = [first, second]
        return {**quote, **first_fields, **second_fields}

    async def sats4ai_bundle(self) -> dict[str, Any] | None:
        """Draw the bundle down to its end, buy the next one, use it (see the docstring)."""
        calls = self.bundle_calls
        if calls[0].balance is None:
            return None  # not a metered seller: nothing to draw down
        stage, url = "sats4ai.bundle", self.settings.sats4ai_url
        body = dict(self.settings.sats4ai_body)
        rebought = False
        while len(calls) < MAX_BUNDLE_CALLS:
            step = f"sats4ai-bundle-{len(calls) + 1}"
            result = await self.fetch(stage, step, "POST", url, json=body)
            if not result.ok:
                raise self.fail(stage, step, "bundle_call_failed", _describe(result), result)
            calls.append(result)
            if rebought:
                break  # one completion on the second bundle
            rebought = result.paid
        if not rebought:
            raise self.fail(
                stage, "sats4ai-bundle", "bundle_never_ran_dry", f"{len(calls)} calls, no 402"
            )
        fields = bundle_fields(calls, self.payer.calls)
        self.artifacts.event(stage, self.step_id("sats4ai-bundle"), "ok", dict(fields))
        return fields

    async def route_a(self) -> dict[str, Any]:
        stage, url = "openagents.route_success", self.settings.route_a_url
        paid = await self.fetch(stage, "route-a", "GET", url)
        if paid.outcome is not Outcome.PAID or not paid.ok or paid.payment is None:
            code = _unpaid_code(paid, "route_not_paid")
            raise self.fail(stage, "route-a", code, _describe(paid), paid)
        calls_after_paid = self.payer.calls
        repeat = await self.fetch(stage, "route-a-repeat", "GET", url)
        fields = {
            "endpointUrl": url,
            "challengeStatusCode": paid.challenge_status,
            "paidStatusCode": paid.status,
            "paidAmountMsats": paid.payment.amount_msats,
            "paymentId": paid.payment.payment_id,
            "proofReference": paid.payment.proof_reference,
            "responseBytes": len(paid.body),
            "responseSha256": _sha256(paid.body),
            "payloadSource": _json_field(paid.body, "source"),
            "payloadTier": _json_field(paid.body, "tier"),
            "repeatStatusCode": repeat.status,
            "repeatPaid": repeat.paid,
            "repeatCacheStatus": repeat.cache_status.value,
            "repeatCacheHit": repeat.cache_status is CacheStatus.HIT and not repeat.paid,
            "payerCallsAfterPaid": calls_after_paid,
            "payerCallsAfterRepeat": self.payer.calls,
        }
        if not (repeat.ok and fields["repeatCacheHit"] and self.payer.calls == calls_after_paid):
            raise self.fail(
                stage,
                "route-a-repeat",
                "route_not_cached",
                f"repeat of a paid reusable route was not a free cache hit: {_describe(repeat)}",
                repeat,
            )
        self.artifacts.event(stage, self.step_id("route-a"), "ok", dict(fields))
        return fields

    async def over_cap(self) -> dict[str, Any]:
        stage, url = "openagents.over_cap_block", self.settings.route_b_url
        before = self.payer.calls
        result = await self.fetch(stage, "route-b", "GET", url)
        after = self.payer.calls
        reason = result.denied.reason_code if result.denied is not None else None
        fields = {
            "endpointUrl": url,
            "challengeStatusCode": result.challenge_status,
            "quotedAmountMsats": result.quote_msats,
            "maxSpendMsats": self.settings.max_spend_msats,
            "blocked": result.outcome is Outcome.DENIED and not result.paid,
            "denyReasonCode": reason.value if reason is not None else None,
            "payerCallsBefore": before,
            "payerCallsAfter": after,
        }
        if not (fields["blocked"] and reason is DenyReason.AMOUNT_OVER_CAP and before == after):
            raise self.fail(stage, "route-b", "over_cap_not_blocked", _describe(result), result)
        self.artifacts.event(stage, self.step_id("route-b"), "ok", dict(fields))
        return fields


async def run_ep212(
    settings: Ep212Settings,
    session: aiohttp.ClientSession,
    payer: Payer,
    *,
    cache: CredentialCache | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Run the rehearsal, write summary.json and events.jsonl, return the summary.

    Raises `Ep212Error` (after writing `{"ok": false, "error": ...}` plus whatever
    sections completed to summary.json) when any step misbehaves.
    """
    artifacts = Artifacts(settings.artifact_dir)
    policy = SpendPolicy(
        max_spend_msats=settings.max_spend_msats,
        allowed_hosts=settings.hosts,
        expected_network=settings.network,
    )
    client = L402Client(session, payer, policy, cache or CredentialCache(), clock=clock)
    run = _Run(settings, client, payer, artifacts)
    summary: dict[str, Any] = {
        "ok": False,
        "requestId": run.request_id,
        "mode": settings.mode,
        "walletBackend": settings.wallet_backend,
    }
    paths = {
        "summaryPath": str(artifacts.summary_path),
        "eventsPath": str(artifacts.events_path),
    }
    try:
        summary["sats4ai"] = await run.sats4ai()
        bundle = await run.sats4ai_bundle()
        if bundle is not None:
            summary["sats4aiBundle"] = bundle
        summary["openAgentsRoute"] = await run.route_a()
        summary["overCap"] = await run.over_cap()
        if settings.payment_session_url is not None:
            step = PaymentStep(settings, session, payer, artifacts, run.request_id)
            summary["paymentScheme"] = await step.run(settings.payment_session_url)
    except Ep212Error as exc:
        summary["error"] = str(exc)
        summary["artifacts"] = paths
        artifacts.summary(summary)
        raise
    summary["ok"] = True
    summary["artifacts"] = paths
    artifacts.summary(summary)
    return summary


MAX_BUNDLE_CALLS = 16  # completions the bundle stage makes at most (then it fails)


def used_units(result: FetchResult) -> int | None:
    """What one completion used, as the seller's upstream reported it (its last usage)."""
    content_type = result.headers.get("Content-Type", "")
    reading = (
        usage_from_sse(result.body, whole=True)
        if content_type.startswith("text/event-stream")
        else usage_from_json(result.body, whole=True)
    )
    return reading.units


def bundle_fields(calls: list[FetchResult], payer_calls: int) -> dict[str, Any]:
    """The buyer's books of a metered seller: bought (units per paid bundle, from the first
    answer's balance: available + this request's reservation), used, paid."""
    completions = []
    bought = used = paid_msats = 0
    for result in calls:
        balance = result.balance
        units = used_units(result)
        if result.paid and result.payment is not None and balance is not None:
            bought += balance.available + (balance.reserved or 0)
            paid_msats += result.payment.amount_msats
        used += units or 0
        completions.append(
            {
                "statusCode": result.status,
                "paid": result.paid,
                "bundleExhausted": result.exhausted,
                "available": balance.available if balance else None,
                "reserved": balance.reserved if balance else None,
                "usedUnits": units,
            }
        )
    first_rebuy = next(i for i, c in enumerate(completions) if c["bundleExhausted"])
    opening = calls[0].balance
    assert opening is not None, "only metered sellers have bundle fields"
    return {
        "unit": opening.unit,
        "bundleUnits": opening.available + (opening.reserved or 0),
        "completions": completions,
        "completionsOnFirstBundle": first_rebuy,
        "payments": sum(1 for c in completions if c["paid"]),
        "paidMsats": paid_msats,
        "unitsBought": bought,
        "unitsUsed": used,
        "payerCalls": payer_calls,
    }


def _json_field(body: bytes, name: str) -> Any:
    """A top-level field of a JSON object body, or None (the payload is the seller's)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None
