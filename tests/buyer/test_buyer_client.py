"""L402Client against a real seller on 127.0.0.1 minting signed invoices and macaroons."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.buyer.cache import CacheStatus, CredentialCache
from gateway.buyer.client import ApprovalRequest, L402Client, Outcome
from gateway.buyer.errors import PaymentError, TransportError
from gateway.buyer.payers import PaymentReceipt, WalletExecutorPayer
from gateway.buyer.policy import DenyReason, SpendPolicy

from .fakes import Executor, FakePayer, RouteSpec, Seller

A = "/ep212/premium-signal"
B = "/ep212/expensive-signal"
PER_REQUEST = "/api/l402/text-generation"


class Env:
    def __init__(self, seller: Seller, server: TestServer, session: aiohttp.ClientSession):
        self.seller = seller
        self.server = server
        self.payer = FakePayer(seller)
        self.policy = SpendPolicy(max_spend_msats=100_000, expected_network="bcrt")
        self.cache = CredentialCache()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.session = session

    def client(self, **kw: Any) -> L402Client:
        kw.setdefault("events", self.sink)
        return L402Client(self.session, self.payer, self.policy, self.cache, **kw)

    def sink(self, name: str, details: Mapping[str, Any]) -> None:
        self.events.append((name, dict(details)))

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
def env(seller_server: tuple[Seller, TestServer], session: aiohttp.ClientSession) -> Env:
    return Env(*seller_server, session)


async def test_pay_and_retry(env: Env) -> None:
    result = await env.client().fetch("GET", env.url(A))
    assert (result.status, result.outcome, result.paid) == (200, Outcome.PAID, True)
    assert result.ok
    assert json.loads(result.body)["route"] == A
    assert result.challenge_status == 402
    assert result.quote_msats == 10_000
    assert result.cache_status is CacheStatus.MISS
    assert result.payment is not None
    assert result.payment.amount_msats == 10_000
    assert env.payer.calls == 1
    assert env.payer.requests[0]["max"] == 100_000
    assert env.payer.requests[0]["host"] == "127.0.0.1"
    assert env.payer.requests[0]["requestId"] == result.request_id
    assert (env.seller.challenges[A], env.seller.served[A]) == (1, 1)
    assert env.policy.spent_msats == 10_000


async def test_cache_hit_pays_nothing_more(env: Env) -> None:
    client = env.client()
    await client.fetch("GET", env.url(A))
    again = await client.fetch("GET", env.url(A))
    assert (again.status, again.outcome, again.paid) == (200, Outcome.OK, False)
    assert again.cache_status is CacheStatus.HIT
    assert again.challenge_status is None
    assert env.payer.calls == 1
    assert (env.seller.challenges[A], env.seller.served[A]) == (1, 2)


async def test_force_refresh_pays_again(env: Env) -> None:
    client = env.client()
    await client.fetch("GET", env.url(A))
    again = await client.fetch("GET", env.url(A), force_refresh=True)
    assert (again.outcome, again.cache_status) == (Outcome.PAID, CacheStatus.MISS)
    assert env.payer.calls == 2


@pytest.mark.parametrize("reject_status", [402, 401])
async def test_cached_credential_refused_repays_once(
    env: Env, routes: dict[str, RouteSpec], reject_status: int
) -> None:
    routes[PER_REQUEST].reject_status = reject_status
    client = env.client()
    body = {"input": [{"role": "User", "content": "hi"}]}
    first = await client.fetch("POST", env.url(PER_REQUEST), json=body)
    second = await client.fetch("POST", env.url(PER_REQUEST), json=body)
    assert (first.outcome, second.outcome) == (Outcome.PAID, Outcome.PAID)
    assert second.status == 200
    assert second.cache_status is CacheStatus.INVALID
    assert env.payer.calls == 2
    assert env.seller.refused[PER_REQUEST] == 1
    assert env.seller.served[PER_REQUEST] == 2
    # plain + retry, then cached (refused) + retry; a 401 carries no challenge, so one
    # extra plain request fetches it. The same body is sent every time.
    expected_requests = 4 if reject_status == 402 else 5
    assert len(env.seller.bodies) == expected_requests
    assert all(json.loads(b) == body for b in env.seller.bodies)
    assert any(name == "credential_refused" for name, _ in env.events)


async def test_seller_refusing_fresh_payment_is_reported_not_looped(
    env: Env, routes: dict[str, RouteSpec]
) -> None:
    routes[A].mode = "always_402"
    result = await env.client().fetch("GET", env.url(A))
    assert result.outcome is Outcome.CREDENTIAL_REJECTED_AFTER_PAYMENT
    assert result.status == 402
    assert result.paid
    assert result.payment is not None
    assert isinstance(result.error, PaymentError)
    assert result.error.code == "credential_rejected_after_payment"
    assert env.payer.calls == 1
    assert len(env.seller.bodies) == 2  # the challenge request and one retry, nothing more
    assert env.cache.lookup(f"127.0.0.1:{env.server.port}", A, 0)[0] is CacheStatus.INVALID


async def test_over_cap_never_reaches_the_payer(env: Env) -> None:
    result = await env.client().fetch("GET", env.url(B))
    assert result.outcome is Outcome.DENIED
    assert result.denied is not None
    assert result.denied.reason_code is DenyReason.AMOUNT_OVER_CAP
    assert (result.quote_msats, result.denied.cap_msats) == (250_000, 100_000)
    assert (result.status, result.challenge_status, result.paid) == (402, 402, False)
    assert env.payer.calls == 0
    assert not result.ok


async def test_approval_refusal_is_clean(env: Env) -> None:
    asked: list[ApprovalRequest] = []

    async def refuse(request: ApprovalRequest) -> bool:
        asked.append(request)
        return False

    result = await env.client(approval=refuse).fetch("GET", env.url(A))
    assert result.outcome is Outcome.DENIED_BY_USER
    assert result.denied is not None
    assert result.denied.reason_code is DenyReason.DENIED_BY_USER
    assert env.payer.calls == 0
    assert [(r.host, r.amount_msats, r.cap_msats) for r in asked] == [
        ("127.0.0.1", 10_000, 100_000)
    ]


async def test_approval_granted_pays(env: Env) -> None:
    async def approve(request: ApprovalRequest) -> bool:
        return request.amount_msats <= request.cap_msats

    result = await env.client(approval=approve).fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAID
    assert env.payer.calls == 1


async def test_token_style_challenge(env: Env, routes: dict[str, RouteSpec]) -> None:
    routes[A].style = "token"
    result = await env.client().fetch("GET", env.url(A))
    assert (result.outcome, result.status) == (Outcome.PAID, 200)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"wrong_hash": True}, DenyReason.INVOICE_MISMATCH),
        ({"network": "bc"}, DenyReason.INVOICE_MISMATCH),
    ],
)
async def test_invoice_checks_block_payment(
    env: Env, routes: dict[str, RouteSpec], change: dict[str, Any], reason: DenyReason
) -> None:
    for name, value in change.items():
        setattr(routes[A], name, value)
    result = await env.client().fetch("GET", env.url(A))
    assert result.denied is not None
    assert result.denied.reason_code is reason
    assert env.payer.calls == 0


async def test_blocked_host(env: Env) -> None:
    env.policy = SpendPolicy(max_spend_msats=100_000, blocked_hosts=["127.0.0.1"])
    result = await env.client().fetch("GET", env.url(A))
    assert result.denied is not None
    assert result.denied.reason_code is DenyReason.HOST_BLOCKED
    assert env.payer.calls == 0


async def test_budget_exhausted_after_spending(env: Env, routes: dict[str, RouteSpec]) -> None:
    routes["/other"] = RouteSpec(10_000)
    env.policy = SpendPolicy(max_spend_msats=100_000, budget_msats=15_000)
    client = env.client()
    assert (await client.fetch("GET", env.url(A))).outcome is Outcome.PAID
    second = await client.fetch("GET", env.url("/other"))
    assert second.denied is not None
    assert second.denied.reason_code is DenyReason.BUDGET_EXHAUSTED
    assert env.payer.calls == 1


async def test_free_route_needs_no_payment(env: Env) -> None:
    result = await env.client().fetch("GET", env.url("/free"))
    assert (result.status, result.outcome, result.paid) == (200, Outcome.OK, False)
    assert env.payer.calls == 0


async def test_payer_failure_is_a_result_and_caches_nothing(env: Env) -> None:
    env.payer.fail = PaymentError("payment_failed", "no route")
    result = await env.client().fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAYMENT_FAILED
    assert result.error is not None
    assert result.error.code == "payment_failed"
    assert len(env.cache) == 0
    assert env.policy.spent_msats == 0


async def test_receipt_with_wrong_preimage_is_refused(env: Env) -> None:
    class Liar(FakePayer):
        async def pay(
            self, invoice: str, max_amount_msats: int, host: str, request_id: str
        ) -> PaymentReceipt:
            receipt = await super().pay(invoice, max_amount_msats, host, request_id)
            return PaymentReceipt(receipt.payment_id, receipt.amount_msats, "00" * 32, 0)

    env.payer = Liar(env.seller)
    result = await env.client().fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAYMENT_FAILED
    assert result.error is not None
    assert result.error.code == "preimage_mismatch"
    assert env.seller.served[A] == 0
    assert env.policy.spent_msats == 10_000  # the payer says it paid: charged, not proven
    assert (result.paid, result.payment) == (False, None)


async def test_events_never_carry_secrets(env: Env) -> None:
    result = await env.client().fetch("GET", env.url(A))
    assert result.payment is not None
    secret = result.payment.preimage_hex
    names = [name for name, _ in env.events]
    assert names == ["challenge", "paid"]
    text = json.dumps([d for _, d in env.events])
    assert secret not in text
    assert "AgE" not in text  # base64 of a V2 macaroon starts with AgE
    assert f"preimage:{secret[:16]}" in text


async def test_unreachable_seller_raises_transport_error(env: Env) -> None:
    url = env.url(A)
    await env.server.close()
    with pytest.raises(TransportError):
        await env.client().fetch("GET", url)


@pytest.mark.parametrize("value", ["\u00b2", "9" * 400, "9" * 20])
async def test_unreadable_valid_until_is_refused_before_paying(
    env: Env, routes: dict[str, RouteSpec], value: str
) -> None:
    routes[A].caveats = (f"ep212_valid_until={value}",)
    result = await env.client().fetch("GET", env.url(A))
    assert result.outcome is Outcome.CHALLENGE_ERROR
    assert result.error is not None
    assert result.error.code == "invalid_caveat"
    assert (env.payer.calls, env.policy.spent_msats, len(env.cache)) == (0, 0, 0)


async def test_largest_valid_until_is_paid_and_cached(
    env: Env, routes: dict[str, RouteSpec]
) -> None:
    routes[A].caveats = ("ep212_valid_until=9999999999999999999",)
    result = await env.client().fetch("GET", env.url(A))
    assert (result.outcome, result.status) == (Outcome.PAID, 200)
    assert env.cache.lookup(f"127.0.0.1:{env.server.port}", A, 0)[0] is CacheStatus.HIT


async def test_cache_write_failure_after_payment_keeps_the_credential(
    env: Env, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.json"
    env.cache = CredentialCache(path)
    path.mkdir()  # every later write of the file fails
    client = env.client()
    result = await client.fetch("GET", env.url(A))
    assert (result.outcome, result.status) == (Outcome.PAID, 200)
    assert result.payment is not None
    assert result.cache_error is not None
    assert result.cache_error.code == "cache_persist_failed"
    names = [name for name, _ in env.events]
    assert names == ["challenge", "paid", "cache_persist_failed"]
    again = await client.fetch("GET", env.url(A))  # still cached in memory
    assert (again.outcome, again.cache_status, again.cache_error) == (
        Outcome.OK,
        CacheStatus.HIT,
        None,
    )
    assert env.payer.calls == 1


async def test_overpaying_executor_is_charged_and_its_proof_kept(
    env: Env, executor_server: tuple[Executor, TestServer]
) -> None:
    executor, server = executor_server
    executor.mode = "overpay"  # pays, then reports one msat above the maximum
    env.payer = WalletExecutorPayer(  # type: ignore[assignment]
        str(server.make_url("/")), executor.token, 5_000, env.session
    )
    env.policy = SpendPolicy(max_spend_msats=100_000, budget_msats=105_000)
    client = env.client()
    result = await client.fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAYMENT_FAILED
    assert isinstance(result.error, PaymentError)
    assert (result.error.code, result.error.spent_msats) == ("amount_exceeds_max", 100_001)
    assert env.policy.spent_msats == 100_001
    assert result.paid
    assert result.payment is not None
    [preimage] = env.seller.preimages.values()  # the one invoice the executor paid
    assert result.payment.preimage_hex == preimage.hex()
    assert result.payment.proof_reference == f"preimage:{preimage.hex()[:16]}"
    assert ("payment_failed", {"requestId": result.request_id, "host": "127.0.0.1",
            "code": "amount_exceeds_max", "spentMsats": 100_001,
            "proofReference": result.payment.proof_reference}) in env.events  # fmt: skip
    second = await client.fetch("GET", env.url(A))
    assert second.denied is not None
    assert second.denied.reason_code is DenyReason.BUDGET_EXHAUSTED
    assert len(executor.received) == 1


@pytest.mark.parametrize(
    ("mode", "code"),
    [("hang", "executor_timeout"), ("not_json", "executor_bad_response")],
)
async def test_unknown_payment_outcome_charges_the_maximum(
    env: Env, executor_server: tuple[Executor, TestServer], mode: str, code: str
) -> None:
    executor, server = executor_server
    executor.mode = mode
    env.payer = WalletExecutorPayer(  # type: ignore[assignment]
        str(server.make_url("/")), executor.token, 300, env.session
    )
    env.policy = SpendPolicy(max_spend_msats=100_000, budget_msats=60_000)
    result = await env.client().fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAYMENT_FAILED
    assert isinstance(result.error, PaymentError)
    assert (result.error.code, result.error.spent_msats) == (code, 60_000)
    assert env.policy.spent_msats == 60_000  # min(cap, remaining budget) was at risk
    assert (result.paid, result.payment) == (False, None)


async def test_payer_error_with_spent_amount_is_charged(env: Env) -> None:
    env.payer.fail = PaymentError("payment_timeout", "no answer", spent_msats=12_345)
    result = await env.client().fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAYMENT_FAILED
    assert env.policy.spent_msats == 12_345
    assert len(env.cache) == 0


async def test_retry_transport_failure_keeps_the_receipt(
    env: Env, routes: dict[str, RouteSpec]
) -> None:
    routes[A].drop_paid = True
    client = env.client()
    result = await client.fetch("GET", env.url(A))
    assert result.outcome is Outcome.PAID_RETRY_FAILED
    assert not result.ok
    assert isinstance(result.error, TransportError)
    assert (result.paid, result.status, result.challenge_status) == (True, 402, 402)
    assert result.payment is not None
    assert result.payment.amount_msats == 10_000
    assert env.payer.calls == 1
    assert env.policy.spent_msats == 10_000
    assert [name for name, _ in env.events] == ["challenge", "paid", "paid_retry_failed"]
    assert env.events[-1][1]["proofReference"] == result.payment.proof_reference
    status, credential = env.cache.lookup(f"127.0.0.1:{env.server.port}", A, 0)
    assert status is CacheStatus.HIT  # the paid token survives for the next call
    assert credential is not None
    assert credential.preimage_hex == result.payment.preimage_hex
