"""Our pricer client against the real meterd of Aperture's master (7ee3ed7).

Skips, saying why, when the master source tarball is absent (fails instead in
CI or with L402_REQUIRE_METERD=1); a failed build fails. meterd prices a
bundle at the blended rate, reserves the request's max_tokens, debits the
usage of the reported tail weighted by direction, and refuses an exhausted
bundle with the next bundle's price (docs/metering.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.pricer.client import GrpcPricer
from gateway.pricer.errors import PricerRefused, PricerUnavailable
from gateway.pricer.types import UsageReport
from gateway.pricer.wire import PricedRequest, priced_request
from tests.support.meterd import MeterdProcess, MeterdUnavailable, find_meterd, meterd_required

from .streams import chat_json, chat_stream

TOKEN = "5a" * 32
IN_MSAT, OUT_MSAT, BUNDLE = 1000, 3000, 1000
BUNDLE_SATS = (BUNDLE * (IN_MSAT + OUT_MSAT) + 1999) // 2000  # meterd's blended quote: 2000


@pytest.fixture(scope="module")
def meterd_binary() -> Path:
    try:
        return find_meterd()
    except MeterdUnavailable as exc:
        message = f"real meterd unavailable: {exc}"
        if meterd_required():
            pytest.fail(f"{message} (required: CI or L402_REQUIRE_METERD=1)")
        pytest.skip(message)


@pytest.fixture
def meterd(meterd_binary: Path) -> Iterator[MeterdProcess]:
    config = {
        "bundletokens": BUNDLE,
        "estimatedtokens": 100,
        "defaultmodel": "demo",
        "models": {"demo": {"inputmsatpertoken": IN_MSAT, "outputmsatpertoken": OUT_MSAT}},
    }
    with MeterdProcess(meterd_binary, config) as process:
        yield process


@pytest.fixture
async def pricer(meterd: MeterdProcess) -> AsyncIterator[GrpcPricer]:
    client = GrpcPricer.connect(meterd.address, timeout=5.0)
    try:
        await client.wait_ready(30.0)
    except PricerUnavailable:
        await client.close()
        pytest.fail(f"meterd did not come up:\n{meterd.log_tail()}")
    yield client
    await client.close()


def chat(max_tokens: int | None = None, model: str = "demo") -> PricedRequest:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return priced_request(
        "POST", "/v1/chat/completions", "",
        [("Host", "llm.example"), ("Content-Type", "application/json")],
        json.dumps(body).encode(),
    )  # fmt: skip


def report(tail: bytes, content_type: str, reserved: int, *, complete: bool = True) -> UsageReport:
    return UsageReport(
        TOKEN, "/v1/chat/completions", "inference", 200, content_type, complete, tail, "", reserved
    )


async def test_a_bundle_bought_spent_and_refused(pricer: GrpcPricer) -> None:
    assert await pricer.get_price(chat()) == BUNDLE_SATS == 2000
    await pricer.challenge_minted(chat(), TOKEN, "inference", BUNDLE_SATS)

    first = await pricer.authorize_request(chat(max_tokens=50), TOKEN, "inference")
    assert (first.allowed, first.reserved_estimate) == (True, 50)
    debit = await pricer.report_usage(
        report(chat_stream(["hello"], 10, 20), "text/event-stream", first.reserved_estimate)
    )
    # Weighted by direction: 10 x 1 + 20 x 3 = 70 sats; 2 x 70000 / 4000 = 35 bundle
    # tokens, so 965 remain, worth 965 x 2 sats at the blended rate.
    assert (debit.debited_sats, debit.remaining_sats) == (70, 1930)

    # No max_tokens: meterd reserves its configured estimate (100).
    second = await pricer.authorize_request(chat(), TOKEN, "inference")
    assert (second.allowed, second.reserved_estimate) == (True, 100)
    spent = await pricer.report_usage(
        report(chat_json(["x"], 400, 800), "application/json", second.reserved_estimate)
    )
    assert spent.remaining_sats == 0  # 2 x (400 + 2400) / 4 = 1400 tokens > 965: clamped at 0

    refused = await pricer.authorize_request(chat(), TOKEN, "inference")
    assert (refused.allowed, refused.price_sats, refused.reason) == (
        False, BUNDLE_SATS, "token bundle exhausted",
    )  # fmt: skip


async def test_unknown_tokens_models_and_abandoned_streams(pricer: GrpcPricer) -> None:
    unknown = await pricer.authorize_request(chat(), "ef" * 32, "inference")
    assert (unknown.allowed, unknown.reason, unknown.price_sats) == (
        False, "unknown L402 token", BUNDLE_SATS,
    )  # fmt: skip
    with pytest.raises(PricerRefused, match="INVALID_ARGUMENT"):
        await pricer.get_price(chat(model="no-such-model"))

    await pricer.challenge_minted(chat(), TOKEN, "inference", BUNDLE_SATS)
    hold = await pricer.authorize_request(chat(max_tokens=200), TOKEN, "inference")
    # The client walked away mid-stream: content, no usage chunk -> the reservation.
    abandoned = chat_stream(["partial"], None, 0).removesuffix(b"data: [DONE]\n\n")
    debit = await pricer.report_usage(
        report(abandoned, "text/event-stream", hold.reserved_estimate, complete=False)
    )
    assert debit.debited_sats == 400  # 200 tokens at the blended 2 sats
    assert debit.remaining_sats == (BUNDLE - 200) * 2
