"""The buyer's path: challenge, pay on regtest, retry, reuse, expiry, route scoping."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from tests.gateway.harness import (
    PRICES_SATS,
    TIP_MSATS,
    VALIDITY_SECONDS,
    Buy,
    Gateway,
    fetch,
    poll,
)

pytestmark = pytest.mark.regtest

_WWW = re.compile(
    r'^(LSAT|L402) macaroon="([A-Za-z0-9+/=]+)", invoice="(lnbcrt[0-9a-z]+)", '
    r'amount_msats="([0-9]+)"$'
)


def assert_challenge(
    status: int, headers: CIMultiDictProxy[str], body: dict[str, Any], route: str
) -> None:
    """A complete, fresh 402/401 challenge for `route`."""
    price = TIP_MSATS if route == "tip" else PRICES_SATS[route] * 1000
    assert status in (401, 402)
    www = headers.getall("WWW-Authenticate")
    assert len(www) == 2, www
    parsed = [_WWW.match(value) for value in www]
    assert all(parsed), www
    assert [m.group(1) for m in parsed if m] == ["LSAT", "L402"]
    lsat, l402 = (m for m in parsed if m)
    assert lsat.group(2, 3, 4) == l402.group(2, 3, 4)
    assert lsat.group(2) == body["macaroon"]
    assert lsat.group(3) == body["invoice"]
    assert int(lsat.group(4)) == price
    assert headers["Cache-Control"] == "no-store"
    assert body["route"] == route
    assert body["price_msats"] == price
    assert isinstance(body["expires_at"], int)
    ident = Identifier.decode(macaroons.decode(str(body["macaroon"])).identifier)
    assert ident.payment_hash.hex() == body["payment_hash"]


@pytest.mark.parametrize(
    ("route", "path", "tier"),
    [
        ("premium", "/ep212/premium-signal", "under-cap"),
        ("expensive", "/ep212/expensive-signal", "over-cap"),
    ],
)
async def test_pay_and_retry(
    gateway: Gateway,
    session: aiohttp.ClientSession,
    buy: Buy,
    buyer_admin: LndClient,
    regtest: Descriptor,
    route: str,
    path: str,
    tier: str,
) -> None:
    async with session.get(gateway.url(path)) as r:
        assert r.status == 402
        assert r.content_type == "application/json"
        assert_challenge(r.status, r.headers, await r.json(), route)

    bought = await buy(session, gateway.url(path))
    assert bought.challenge["expires_at"] == int(gateway.clock()) + 3600
    invoice = await buyer_admin.decode_pay_req(bought.challenge["invoice"])
    assert invoice.payment_hash.hex() == bought.challenge["payment_hash"]
    assert invoice.num_msat == PRICES_SATS[route] * 1000
    assert invoice.destination == regtest.seller.pubkey
    assert invoice.description == f"L402 {route}"
    assert invoice.expiry == 3600
    assert invoice.num_route_hints >= 1  # private invoices: the seller has a private channel

    async with session.get(gateway.url(path), headers=bought.auth) as r:
        assert r.status == 200, await r.text()
        payload = await r.json()
    assert payload["ok"] is True
    assert payload["source"] == "openagents.ep212"
    assert payload["route"] == path
    assert payload["tier"] == tier
    assert payload["signals"]
    assert payload["authorizationHeaders"] == 1
    assert await gateway.metric("l402_paid_requests_total", route=route) == 1


async def test_upstream_sees_exactly_the_one_credential(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """The header forwarded is `L402 <mac>:<preimage>`, verbatim, and only once."""
    bought = await buy(session, gateway.url("/expiring"))
    async with session.get(gateway.url("/expiring"), headers=bought.auth) as r:
        assert r.status == 200
        seen = await r.json()
    auth = [v for k, v in seen["headers"] if k.lower() == "authorization"]
    assert auth == [bought.authorization]


async def test_reuse_then_expiry(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url("/expiring"))
    for _ in range(3):
        status, _, body = await fetch(session, "GET", gateway.url("/expiring"), headers=bought.auth)
        assert status == 200, body
    assert await gateway.metric("l402_paid_requests_total", route="expiring") == 3
    assert await gateway.metric("l402_challenges_issued_total", route="expiring") == 1

    gateway.clock.advance(VALIDITY_SECONDS)  # the last valid second
    status, _, body = await fetch(session, "GET", gateway.url("/expiring"), headers=bought.auth)
    assert status == 200, body

    gateway.clock.advance(1)
    async with session.get(gateway.url("/expiring"), headers=bought.auth) as r:
        assert r.status == 402
        body_json = await r.json()
        assert body_json["reason"] == "expired"
        assert_challenge(r.status, r.headers, body_json, "expiring")
    assert body_json["macaroon"] != bought.macaroon
    assert body_json["payment_hash"] != bought.challenge["payment_hash"]
    assert await gateway.metric("l402_auth_failures_total", route="expiring", reason="expired") == 1


async def test_token_is_scoped_to_its_route(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url("/ep212/premium-signal"))
    async with session.get(gateway.url("/ep212/expensive-signal"), headers=bought.auth) as r:
        assert r.status == 402
        body = await r.json()
        assert body["reason"] == "wrong_route"
        assert_challenge(r.status, r.headers, body, "expensive")
    status, _, _ = await fetch(
        session, "GET", gateway.url("/ep212/premium-signal"), headers=bought.auth
    )
    assert status == 200


async def test_capability_route_and_attenuation(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """The minted capabilities admit the route; a holder's narrowing caveats are enforced."""
    bought = await buy(session, gateway.url("/cap"))
    decoded = macaroons.decode(bought.macaroon)
    assert "capability_capabilities=read,write" in decoded.caveats
    status, _, _ = await fetch(session, "GET", gateway.url("/cap"), headers=bought.auth)
    assert status == 200

    cases = {
        "capability_capabilities=read": (402, "missing_capability"),
        "services=premium:0": (402, "wrong_route"),
        f"capability_valid_until={int(gateway.clock()) - 1}": (402, "expired"),
        "ip_address=127.0.0.1": (401, "malformed"),  # unknown condition: fail closed
    }
    for caveat, (want_status, want_reason) in cases.items():
        narrowed = macaroons.encode_b64(macaroons.add_caveat(decoded, caveat))
        headers = {"Authorization": f"L402 {narrowed}:{bought.preimage}"}
        async with session.get(gateway.url("/cap"), headers=headers) as r:
            body = await r.json()
            assert (r.status, body.get("reason")) == (want_status, want_reason), caveat
            assert_challenge(r.status, r.headers, body, "capability")


async def test_grpc_request_gets_trailers_only_challenge(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        gateway.url("/ep212/premium-signal"),
        data=b"\x00\x00\x00\x00\x00",
        headers={"Content-Type": "application/grpc+proto", "TE": "trailers"},
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/grpc")
        assert r.headers["grpc-status"] == "13"
        assert r.headers["grpc-message"] == "payment required"
        www = r.headers.getall("WWW-Authenticate")
        assert [v.split(" ", 1)[0] for v in www] == ["LSAT", "L402"]
        assert all(_WWW.match(v) for v in www), www
        assert await r.read() == b""
    assert await gateway.metric("l402_challenges_issued_total", route="premium") == 1


async def test_free_route_needs_no_payment_and_forwards_no_authorization(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    fake = macaroons.encode_b64(b"\x02junk")
    for headers in ({}, {"Authorization": f"L402 {fake}:{'00' * 32}"}, {"Macaroon": "abcd"}):
        async with session.post(gateway.url("/free/x"), data=b"hello", headers=headers) as r:
            assert r.status == 200, await r.text()
            seen = await r.json()
        names = {k.lower() for k, _ in seen["headers"]}
        assert "authorization" not in names
        assert "macaroon" not in names
        assert seen["path"] == "/echo/free/x"
        assert seen["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert await gateway.metric("l402_challenges_issued_total", route="free") == 0
    assert (
        await gateway.metric("l402_upstream_requests_total", route="free", status_class="2xx") == 3
    )


async def test_probes_only_on_admin_listener(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    for probe in ("/healthz", "/readyz"):
        status, _, body = await fetch(session, "GET", gateway.admin + probe)
        assert status == 200, body
        async with session.get(gateway.url(probe)) as r:
            assert r.status == 404
            assert (await r.json())["error"] == "no_route"
    async with session.get(gateway.url("/metrics")) as r:
        assert r.status == 404
    async with session.get(gateway.admin + "/ep212/premium-signal") as r:
        assert r.status == 404


async def test_millisatoshi_price(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy, buyer_admin: LndClient
) -> None:
    """A price that is not whole satoshis is invoiced, paid and booked to the millisatoshi."""
    async with session.get(gateway.url("/tip")) as r:
        assert_challenge(r.status, r.headers, await r.json(), "tip")
    bought = await buy(session, gateway.url("/tip"))
    assert (await buyer_admin.decode_pay_req(bought.challenge["invoice"])).num_msat == TIP_MSATS
    status, _, _ = await fetch(session, "GET", gateway.url("/tip"), headers=bought.auth)
    assert status == 200

    async def booked() -> bool:
        revenue = await gateway.metric("l402_revenue_msats_total", route="tip")
        assert revenue in (0, TIP_MSATS)
        return revenue == TIP_MSATS

    await poll("the tip to be booked", booked)
