"""Dynamic prices through the whole request path: a real pricing service on loopback.

The challenge carries the hook's price (invoice amount, 402 body, token
record); a failing hook (down, too slow, garbage) makes the challenge use the
fallback price and counts why; paying and retrying works, and the price paid
is never re-checked against the hook.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.regtest.processes import free_port
from tests.pricing.harness import (
    FALLBACK_SATS,
    GARBAGE,
    PricingService,
    gateway_with,
    hooked_route,
    pricing_service,
)
from tests.server.harness import InProcess, json_of, status_of

FALLBACK_MSAT = FALLBACK_SATS * 1000


@pytest.fixture
async def hook() -> AsyncIterator[PricingService]:
    async with pricing_service() as service:
        yield service


def _with_hook(url: str, **pricing: Any) -> Any:
    def edit(doc: dict[str, Any], upstream: str) -> None:
        doc["routes"].insert(0, hooked_route(upstream, url, **pricing))

    return edit


@pytest.fixture
async def gw(tmp_path: Path, hook: PricingService) -> AsyncIterator[InProcess]:
    async with gateway_with(tmp_path, _with_hook(hook.url)) as running:
        yield running


async def _token_price(gw: InProcess, challenge: dict[str, Any]) -> int:
    info = await gw.store.find_token(bytes.fromhex(challenge["payment_hash"]))
    assert info is not None
    return info.price_msat


async def test_the_challenge_carries_the_hooks_price(gw: InProcess, hook: PricingService) -> None:
    hook.state.prices["/dyn/small"] = 2_000
    hook.state.prices["/dyn/large"] = 123_456
    small = await gw.challenge("/dyn/small")
    large = await gw.challenge("/dyn/large")
    assert (small["price_msats"], large["price_msats"]) == (2_000, 123_456)
    # The invoice LND was asked for, and the token row, hold the same amounts.
    assert [call[0] for call in gw.invoices.calls] == [2_000, 123_456]
    assert await _token_price(gw, small) == 2_000
    assert await _token_price(gw, large) == 123_456
    assert await gw.metric("l402_challenges_issued_total", route="dyn") == 2
    assert await gw.metric("l402_pricing_fallbacks_total", route="dyn") == 0
    assert await gw.metric("l402_pricing_hook_latency_seconds_count", route="dyn") == 2


async def test_www_authenticate_states_the_hooks_amount(
    gw: InProcess, hook: PricingService
) -> None:
    hook.state.prices["/dyn/x"] = 7_777
    async with gw.session.get(gw.url("/dyn/x")) as r:
        assert r.status == 402
        www = r.headers.getall("WWW-Authenticate")
    assert all('amount_msats="7777"' in value for value in www)


async def test_the_hook_is_told_route_method_path_and_only_listed_headers(
    gw: InProcess, hook: PricingService
) -> None:
    # Raw bytes: aiohttp's client would merge the repeated X-Size itself.
    request = (
        b"POST /dyn/./a//b?q=secret HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-Model: big\r\nx-size: a\r\nX-Size: b\r\nX-Other: never sent\r\n"
        b"Cookie: session=secret\r\n"
        b"Authorization: L402 AGIAJEemVQUTEyNCR0exk7ek90Cg==:" + b"00" * 32 + b"\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    answer = await gw.raw(request)
    assert status_of(answer) == 402  # the malformed credential is re-challenged
    assert json_of(answer)["reason"] == "malformed"
    (call,) = hook.state.calls
    assert call == {
        "route": "dyn",
        "method": "POST",
        "path": "/dyn/a/b",  # the normal form the route matched, never the query
        "headers": {"x-model": "big", "x-size": "a, b"},
    }


async def test_long_header_values_are_cut(gw: InProcess, hook: PricingService) -> None:
    await gw.challenge("/dyn/x", headers={"X-Model": "m" * 5000})
    assert hook.state.calls[0]["headers"] == {"x-model": "m" * 1024}


async def test_pay_and_retry_at_the_hooks_price(gw: InProcess, hook: PricingService) -> None:
    hook.state.prices["/dyn/item"] = 3_000
    bought = await gw.buy("/dyn/item")
    assert bought.challenge["price_msats"] == 3_000
    calls = len(hook.state.calls)
    async with gw.session.get(gw.url("/dyn/item"), headers=bought.auth) as r:
        assert r.status == 200
    assert gw.seen.requests[-1]["raw_path"] == "/dyn/item"
    assert len(hook.state.calls) == calls  # a paid request is not priced again
    # The hook changing its mind later does not touch a token already paid for.
    hook.state.prices["/dyn/item"] = 400_000
    hook.state.mode = "server_error"
    async with gw.session.get(gw.url("/dyn/item"), headers=bought.auth) as r:
        assert r.status == 200
    assert await gw.metric("l402_paid_requests_total", route="dyn") == 2


async def test_a_refused_credential_is_rechallenged_at_the_hooks_price(
    gw: InProcess, hook: PricingService
) -> None:
    bought = await gw.buy("/paid")  # another route's token
    hook.state.prices["/dyn/x"] = 4_321
    async with gw.session.get(gw.url("/dyn/x"), headers=bought.auth) as r:
        body = await r.json()
    assert (r.status, body["reason"], body["price_msats"]) == (402, "wrong_route", 4_321)


async def test_hook_down_uses_the_fallback(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/price"
    async with gateway_with(tmp_path, _with_hook(closed)) as gw:
        first = await gw.challenge("/dyn/x")
        second = await gw.challenge("/dyn/y")
        assert first["price_msats"] == second["price_msats"] == FALLBACK_MSAT
        assert await _token_price(gw, first) == FALLBACK_MSAT
        assert await gw.metric("l402_pricing_fallbacks_total", route="dyn", reason="error") == 2
        # The fallback price is a real price: pay it and get through.
        bought = await gw.buy("/dyn/z")
        async with gw.session.get(gw.url("/dyn/z"), headers=bought.auth) as r:
            assert r.status == 200


async def test_a_slow_hook_times_out_to_the_fallback(tmp_path: Path, hook: PricingService) -> None:
    hook.state.mode = "slow"
    async with gateway_with(tmp_path, _with_hook(hook.url, timeout_seconds=0.3)) as gw:
        challenge = await gw.challenge("/dyn/x")
        assert challenge["price_msats"] == FALLBACK_MSAT
        assert await gw.metric("l402_pricing_fallbacks_total", route="dyn", reason="timeout") == 1


@pytest.mark.parametrize("mode", sorted(GARBAGE))
async def test_a_garbage_answer_uses_the_fallback(
    gw: InProcess, hook: PricingService, mode: str
) -> None:
    hook.state.mode = mode
    challenge = await gw.challenge("/dyn/x")
    assert challenge["price_msats"] == FALLBACK_MSAT
    assert gw.invoices.calls[-1][0] == FALLBACK_MSAT
    reason = "status" if GARBAGE[mode][0] != 200 else "invalid"
    assert await gw.metric("l402_pricing_fallbacks_total", route="dyn", reason=reason) == 1


async def test_the_max_price_itself_is_accepted(gw: InProcess, hook: PricingService) -> None:
    hook.state.prices["/dyn/x"] = 500_000  # max_price_sats: 500
    assert (await gw.challenge("/dyn/x"))["price_msats"] == 500_000


async def test_a_rate_limited_client_costs_the_hook_nothing(
    tmp_path: Path, hook: PricingService
) -> None:
    def edit(doc: dict[str, Any], upstream: str) -> None:
        doc["routes"].insert(0, hooked_route(upstream, hook.url))
        doc["challenge_rate_limit"] = {"per_minute": 1, "burst": 1}

    async with gateway_with(tmp_path, edit) as gw:
        await gw.challenge("/dyn/x")
        async with gw.session.get(gw.url("/dyn/x")) as r:
            assert r.status == 429
        assert len(hook.state.calls) == 1
        assert len(gw.invoices.calls) == 1


async def test_lnd_down_on_a_hooked_route_is_503_and_stores_nothing(
    gw: InProcess, hook: PricingService
) -> None:
    gw.invoices.down = True
    async with gw.session.get(gw.url("/dyn/x")) as r:
        assert r.status == 503
    assert len(hook.state.calls) == 1  # priced first, then LND refused
    assert await gw.store.list_tokens(route="dyn") == []


async def test_reload_points_the_route_at_another_hook(
    tmp_path: Path, gw: InProcess, hook: PricingService
) -> None:
    async with pricing_service() as other:
        other.state.prices["/dyn/x"] = 6_000
        path = tmp_path / "routes.yaml"
        text = path.read_text().replace(hook.url, other.url)
        assert text != path.read_text()
        path.write_text(text)
        assert gw.server.reload(path)
        assert (await gw.challenge("/dyn/x"))["price_msats"] == 6_000
        assert hook.state.calls == []


async def test_a_constant_price_route_never_calls_the_hook(
    gw: InProcess, hook: PricingService
) -> None:
    await gw.challenge("/paid")
    assert hook.state.calls == []
