"""CORS for browser buyers (a real browser runs the same flow in tests/browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.server.harness import in_process

APP = "https://app.example"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


async def test_preflight_is_answered_without_minting(tmp_path: Path) -> None:
    async with in_process(tmp_path, cors={"allow_origins": [APP]}) as gw:
        async with gw.session.options(gw.url("/paid"), headers=PREFLIGHT) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == APP
            assert "authorization" in r.headers["Access-Control-Allow-Headers"]
            assert r.headers["Access-Control-Allow-Methods"] == "GET"
            assert r.headers["Access-Control-Max-Age"] == "600"
            assert r.headers["Vary"] == "Origin"
        assert gw.invoices.calls == []
        assert await gw.metric("l402_challenges_issued_total", route="paid") == 0


async def test_challenge_and_paid_answer_are_readable_cross_origin(tmp_path: Path) -> None:
    async with in_process(tmp_path, cors={"allow_origins": [APP]}) as gw:
        async with gw.session.get(gw.url("/paid"), headers={"Origin": APP}) as r:
            assert r.status == 402
            assert r.headers["Access-Control-Allow-Origin"] == APP
            exposed = r.headers["Access-Control-Expose-Headers"].split(", ")
            assert "www-authenticate" in exposed
            body = await r.json()
        preimage = gw.invoices.preimage_for(bytes.fromhex(body["payment_hash"])).hex()
        auth = {"Origin": APP, "Authorization": f"L402 {body['macaroon']}:{preimage}"}
        async with gw.session.get(gw.url("/paid"), headers=auth) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == APP


async def test_other_origins_get_no_cors_headers(tmp_path: Path) -> None:
    async with in_process(tmp_path, cors={"allow_origins": [APP]}) as gw:
        evil = dict(PREFLIGHT, Origin="https://evil.example")
        async with gw.session.options(gw.url("/paid"), headers=evil) as r:
            assert r.status == 204
            assert "Access-Control-Allow-Origin" not in r.headers
        async with gw.session.get(gw.url("/paid"), headers={"Origin": evil["Origin"]}) as r:
            assert r.status == 402
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_no_policy_means_no_headers_and_still_no_minting(tmp_path: Path) -> None:
    async with in_process(tmp_path) as gw:
        async with gw.session.options(gw.url("/paid"), headers=PREFLIGHT) as r:
            assert r.status == 204
            assert "Access-Control-Allow-Origin" not in r.headers
        assert gw.invoices.calls == []


async def test_route_policy_overrides_the_global_one(tmp_path: Path) -> None:
    patch: dict[str, dict[str, Any]] = {
        "paid": {"cors": {"allow_origins": "*"}},
        "free": {"cors": {"allow_origins": []}},
    }
    async with in_process(tmp_path, patch, cors={"allow_origins": [APP]}) as gw:
        async with gw.session.get(gw.url("/paid"), headers={"Origin": "https://any.example"}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        async with gw.session.get(gw.url("/free"), headers={"Origin": APP}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers  # turned off for this route
        async with gw.session.get(gw.url("/expiring"), headers={"Origin": APP}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == APP  # the global policy


async def test_credentials_mode_echoes_the_origin(tmp_path: Path) -> None:
    cors = {"allow_origins": [APP], "allow_credentials": True}
    async with (
        in_process(tmp_path, cors=cors) as gw,
        gw.session.get(gw.url("/paid"), headers={"Origin": APP}) as r,
    ):
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in r.headers.getall("Vary")
