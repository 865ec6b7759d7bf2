"""Every branch of a paid request, a challenge and a refusal, in process (no LND).

The regtest suites (tests/gateway) run the same flows against real LND.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.l402 import macaroons
from gateway.server.keys import HANDLER_KEY
from tests.server.harness import InProcess, in_process


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as running:
        yield running


async def test_challenge_has_both_headers_json_and_no_store(gw: InProcess) -> None:
    async with gw.session.get(gw.url("/paid/x")) as r:
        assert r.status == 402
        www = r.headers.getall("WWW-Authenticate")
        body = await r.json()
        assert r.headers["Cache-Control"] == "no-store"
    assert [v.split(" ", 1)[0] for v in www] == ["LSAT", "L402"]
    assert all(f'invoice="{body["invoice"]}"' in v for v in www)
    assert body["price_msats"] == 10_000
    assert body["route"] == "paid"
    assert gw.invoices.calls[-1] == (10_000, "L402 paid", 3600, True)
    assert await gw.metric("l402_challenges_issued_total", route="paid") == 1


async def test_grpc_client_gets_trailers_only_answer(gw: InProcess) -> None:
    headers = {"Content-Type": "application/grpc"}
    async with gw.session.post(gw.url("/paid/svc.Method"), headers=headers) as r:
        assert r.status == 200
        assert r.headers["grpc-status"] == "13"
        assert r.headers["grpc-message"] == "payment required"
        assert len(r.headers.getall("WWW-Authenticate")) == 2


async def test_paid_request_is_forwarded_with_one_canonical_authorization(gw: InProcess) -> None:
    bought = await gw.buy("/paid/x")
    headers = {
        "Authorization": f"LSAT {bought.macaroon}:{bought.preimage}",
        "Macaroon": "ignored-lnd-macaroon",
        "Token": "",
    }
    async with gw.session.get(
        gw.url("/paid/x?q=1"), headers={**headers, "X-Request-Id": "buyer-chosen-1"}
    ) as r:
        assert r.status == 200, await r.text()
        assert r.headers["X-Request-Id"] == "buyer-chosen-1"  # paid answers carry it too
        seen = await r.json()
    forwarded = [v for k, v in seen["headers"] if k.lower() == "authorization"]
    assert forwarded == [f"L402 {bought.macaroon}:{bought.preimage}"]
    assert not [k for k, _ in seen["headers"] if k.lower() in ("macaroon", "token")]
    assert seen["raw_path"] == "/paid/x?q=1"
    assert await gw.metric("l402_paid_requests_total", route="paid") == 1


async def test_repeat_request_is_a_cache_hit(gw: InProcess) -> None:
    bought = await gw.buy("/paid")
    for _ in range(3):
        async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
            assert r.status == 200
    assert gw.server.app[HANDLER_KEY].paywall.services.auth.cache.hits == 2


async def test_token_header_blip26_is_accepted(gw: InProcess) -> None:
    bought = await gw.buy("/paid")
    raw = macaroons.decode(bought.macaroon)
    with_preimage = macaroons.add_caveat(raw, f"preimage={bought.preimage}")
    for name in ("Token", "Grpc-Metadata-Token"):
        async with gw.session.get(gw.url("/paid"), headers={name: with_preimage.hex()}) as r:
            assert r.status == 200, (name, await r.text())


@pytest.mark.parametrize("status", [402, 401])
async def test_not_genuine_credentials_get_the_configured_status(
    tmp_path: Path, status: int
) -> None:
    async with in_process(tmp_path, invalid_credential_status=status) as gw:
        bought = await gw.buy("/paid")
        wrong = "00" * 32
        for value, reason in [
            (f"L402 {bought.macaroon}:{wrong}", "preimage_mismatch"),
            ("L402 not-base64!:" + bought.preimage, "malformed"),
        ]:
            async with gw.session.get(gw.url("/paid"), headers={"Authorization": value}) as r:
                body = await r.json()
                assert (r.status, body["reason"]) == (status, reason)
                assert body["error"] == "invalid_credential"
                assert len(r.headers.getall("WWW-Authenticate")) == 2  # a fresh challenge


async def test_expired_token_gets_402_and_a_fresh_challenge(gw: InProcess) -> None:
    bought = await gw.buy("/expiring")
    async with gw.session.get(gw.url("/expiring"), headers=bought.auth) as r:
        assert r.status == 200
    gw.clock.advance(61)
    async with gw.session.get(gw.url("/expiring"), headers=bought.auth) as r:
        body = await r.json()
        assert (r.status, body["reason"]) == (402, "expired")
        assert body["invoice"] != bought.challenge["invoice"]


async def test_token_of_another_route_is_wrong_route(gw: InProcess) -> None:
    bought = await gw.buy("/paid")
    async with gw.session.get(gw.url("/expiring"), headers=bought.auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "wrong_route")
    assert await gw.metric("l402_auth_failures_total", route="expiring", reason="wrong_route") == 1


async def test_unknown_token_is_402_so_clients_that_repay_only_on_402_recover(
    gw: InProcess,
) -> None:
    bought = await gw.buy("/paid")
    key_id = macaroons.decode(bought.macaroon)
    await gw.store.revoke(key_id.identifier[34:].hex())
    async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
        body = await r.json()
        assert (r.status, body["reason"]) == (402, "revoked")
    # A client that re-pays on 402 pays the fresh challenge and gets through.
    preimage = gw.invoices.preimage_for(bytes.fromhex(body["payment_hash"])).hex()
    retry = {"Authorization": f"L402 {body['macaroon']}:{preimage}"}
    async with gw.session.get(gw.url("/paid"), headers=retry) as r:
        assert r.status == 200


async def test_capability_is_enforced(gw: InProcess) -> None:
    bought = await gw.buy("/cap")
    raw = macaroons.decode(bought.macaroon)
    narrowed = macaroons.add_caveat(raw, "cap_capabilities=read")
    auth = {"Authorization": f"L402 {base64.b64encode(narrowed).decode()}:{bought.preimage}"}
    async with gw.session.get(gw.url("/cap"), headers=auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "missing_capability")
    async with gw.session.get(gw.url("/cap"), headers=bought.auth) as r:
        assert r.status == 200


async def test_free_route_forwards_without_credentials(gw: InProcess) -> None:
    async with gw.session.get(gw.url("/free/x"), headers={"Authorization": "Bearer k"}) as r:
        assert r.status == 200
        seen = await r.json()
    assert not [k for k, _ in seen["headers"] if k.lower() == "authorization"]
    assert gw.invoices.calls == []


async def test_lnd_down_is_503_with_retry_after_and_stores_nothing(gw: InProcess) -> None:
    gw.invoices.down = True
    async with gw.session.get(gw.url("/paid")) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "5"
        assert (await r.json())["error"] == "lightning_unavailable"
    assert await gw.store.prune_candidates(2**40, 10) == []  # no token row was stored
    assert (
        await gw.metric("l402_invoice_failures_total", route="paid", reason="lnd_unavailable") == 1
    )


async def test_rate_limited_client_gets_429_and_mints_nothing(tmp_path: Path) -> None:
    async with in_process(tmp_path, challenge_rate_limit={"per_minute": 1, "burst": 2}) as gw:
        bought = await gw.buy("/paid")
        await gw.challenge("/paid")
        async with gw.session.get(gw.url("/paid")) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
        assert len(gw.invoices.calls) == 2
        async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
            assert r.status == 200  # a paid request is never limited


async def test_ipv6_clients_are_limited_per_64(tmp_path: Path) -> None:
    """Ten addresses from one /64 used to get ten allowances."""
    limits = {"per_minute": 1, "burst": 2}
    async with in_process(
        tmp_path, challenge_rate_limit=limits, trusted_proxies=["127.0.0.1/32"]
    ) as gw:

        async def status(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            async with gw.session.get(gw.url("/paid"), headers=headers) as r:
                return r.status

        assert [await status(f"2001:db8:0:1::{n}") for n in range(1, 5)] == [402, 402, 429, 429]
        assert await status("2001:db8:0:2::1") == 402  # another /64, another client
        assert [await status(a) for a in ("192.0.2.1", "192.0.2.1", "192.0.2.1")] == [
            402,
            402,
            429,
        ]
        assert await status("192.0.2.2") == 402  # IPv4: per address
