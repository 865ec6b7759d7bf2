"""The admin API on a real in-process gateway (edge listeners, handler, SQLite store).

LND's invoice role is the named fake of tests/server (tokens are "paid" with
the preimage it hands out); tests/ops/test_ops_regtest.py repeats the
essential path on real LND.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from multidict import CIMultiDictProxy

from gateway.server.admin import create_admin_app
from gateway.server.admin_api import server_reloader
from gateway.store.types import SettledInvoice
from tests.ops.support import SECRET, bearer, write_secret
from tests.server.harness import InProcess, in_process

UPSTREAM_KEY = "upstream-api-key-that-must-not-leak"
CALLS = [
    ("GET", "/admin/tokens"),
    ("GET", "/admin/tokens/" + "00" * 32),
    ("POST", "/admin/tokens/" + "00" * 32 + "/revoke"),
    ("GET", "/admin/report"),
    ("GET", "/admin/routes"),
    ("POST", "/admin/reload"),
]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    token_file = write_secret(tmp_path / "admin.token")
    patch = {"paid": {"upstream_headers": {"X-Api-Key": UPSTREAM_KEY}}}
    async with in_process(tmp_path, patch, admin={"token_file": str(token_file)}) as h:
        yield h


async def call(
    h: InProcess, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with h.session.request(method, h.admin + path, headers=headers, **kw) as r:
        return r.status, await r.json(), r.headers


@pytest.mark.parametrize(("method", "path"), CALLS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-secret-of-the-same-sort-0123456789abcdef012345",
        f"Bearer {SECRET[:-1]}",
        f"Bearer {SECRET}x",
        f"Basic {SECRET}",
        SECRET,
    ],
)
async def test_every_call_refuses_a_missing_or_wrong_secret_with_a_bare_401(
    gw: InProcess, method: str, path: str, authorization: str | None
) -> None:
    bought = await gw.buy("/paid")
    headers = {"Authorization": authorization} if authorization is not None else None
    status, body, response_headers = await call(gw, method, path, headers)
    assert (status, body) == (401, {"error": "unauthorized"})
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    # nothing happened: the bought token still buys
    async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
        assert r.status == 200


async def test_probes_and_metrics_need_no_secret(gw: InProcess) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        async with gw.session.get(gw.admin + path) as r:
            assert r.status == 200, path


async def test_the_api_is_not_on_the_public_listener(gw: InProcess) -> None:
    bought = await gw.buy("/paid")
    for method, path in CALLS:
        async with gw.session.request(method, gw.url(path), headers=bearer()) as r:
            text = await r.text()
            assert r.status == 404, (method, path)
            assert bought.challenge["payment_hash"] not in text


async def test_the_api_is_off_without_a_token_file(tmp_path: Path) -> None:
    async with in_process(tmp_path) as h:
        status, body, _ = await call(h, "GET", "/admin/tokens", bearer())
        assert status == 404
        assert "admin.token_file" in body["error"]
        async with h.session.get(h.admin + "/healthz") as r:
            assert r.status == 200


async def test_a_token_file_others_can_read_stops_the_api(gw: InProcess, tmp_path: Path) -> None:
    assert (await call(gw, "GET", "/admin/tokens", bearer()))[0] == 200
    (tmp_path / "admin.token").chmod(0o644)
    status, body, _ = await call(gw, "GET", "/admin/tokens", bearer())
    assert status == 503
    assert SECRET not in str(body)
    (tmp_path / "admin.token").chmod(0o600)
    # rotation is a file write: the old secret stops working at once
    write_secret(tmp_path / "admin.token", "b" * 64)
    assert (await call(gw, "GET", "/admin/tokens", bearer()))[0] == 401
    assert (await call(gw, "GET", "/admin/tokens", bearer("b" * 64)))[0] == 200


async def test_list_and_show_tokens_with_their_state(gw: InProcess) -> None:
    first = await gw.buy("/paid")
    second = await gw.buy("/once", "POST")
    gw.clock.advance(5)  # a later created_at for the third
    third = await gw.buy("/paid")
    paid_hash = bytes.fromhex(first.challenge["payment_hash"])
    await gw.store.record_settlement(SettledInvoice(paid_hash, "paid", 10_000, 1, 1_790_000_000))
    async with gw.session.post(gw.url("/once"), headers=second.auth, data=b"x") as r:
        assert r.status == 200  # consumes the single-use token

    status, body, _ = await call(gw, "GET", "/admin/tokens", bearer())
    assert status == 200
    tokens = body["tokens"]
    assert tokens[0]["payment_hash"] == third.challenge["payment_hash"]
    by_hash = {t["payment_hash"]: t for t in tokens}
    assert len(by_hash) == 3
    one = by_hash[first.challenge["payment_hash"]]
    assert (one["route"], one["state"], one["amt_paid_msat"]) == ("paid", "paid", 10_000)
    assert one["paid_at"] == 1_790_000_000
    once = by_hash[second.challenge["payment_hash"]]
    assert (once["route"], once["state"], once["single_use"]) == ("once", "used", True)
    assert once["used_at"] is not None
    assert by_hash[third.challenge["payment_hash"]]["state"] == "unpaid"
    assert body["next_cursor"] is None
    for token in tokens:  # no secret of any kind
        assert first.preimage not in str(token)
        assert set(token) >= {"token_id", "payment_hash", "route", "created_at", "revoked_at"}

    # paging: one at a time, by cursor, the same three in the same order
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        status, page, _ = await call(gw, "GET", "/admin/tokens", bearer(), params=params)
        assert status == 200
        seen += [t["token_id"] for t in page["tokens"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [t["token_id"] for t in tokens]
    status, page, _ = await call(gw, "GET", "/admin/tokens", bearer(), params={"route": "once"})
    assert [t["route"] for t in page["tokens"]] == ["once"]

    # show, by token id and by payment hash
    token_id = one["token_id"]
    for key in (token_id, first.challenge["payment_hash"]):
        status, shown, _ = await call(gw, "GET", f"/admin/tokens/{key}", bearer())
        assert (status, shown["token"]) == (200, one)
    status, _, _ = await call(gw, "GET", "/admin/tokens/" + "ab" * 32, bearer())
    assert status == 404
    for bad in ("xyz", "ab" * 31, "zz" * 32):
        status, _, _ = await call(gw, "GET", f"/admin/tokens/{bad}", bearer())
        assert status == 400, bad
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"cursor": "nope"}):
        status, _, _ = await call(gw, "GET", "/admin/tokens", bearer(), params=params)
        assert status == 400, params


async def test_revoke_takes_effect_at_once_and_only_once(gw: InProcess) -> None:
    bought = await gw.buy("/paid")
    async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
        assert r.status == 200  # now in the verified-credential cache
    payment_hash = bought.challenge["payment_hash"]
    status, body, _ = await call(gw, "POST", f"/admin/tokens/{payment_hash}/revoke", bearer())
    assert status == 200
    assert body["revoked"] is True
    assert body["cache_cleared"] is True
    assert body["token"]["state"] == "revoked"
    assert body["token"]["revoked_at"] is not None
    async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
        assert r.status == 402  # refused now, not within 60 s
        assert "revoked" in await r.text()
    assert await gw.metric("l402_auth_failures_total", route="paid", reason="revoked") == 1
    status, again, _ = await call(gw, "POST", f"/admin/tokens/{payment_hash}/revoke", bearer())
    assert (status, again["error"]) == (409, "already revoked")
    status, _, _ = await call(gw, "POST", "/admin/tokens/" + "cd" * 32 + "/revoke", bearer())
    assert status == 404


async def test_report(gw: InProcess) -> None:
    bought = await gw.buy("/paid")
    payment_hash = bytes.fromhex(bought.challenge["payment_hash"])
    settled_at = int(gw.clock())
    await gw.store.record_settlement(SettledInvoice(payment_hash, "paid", 10_000, 1, settled_at))
    await gw.store.add_paid_requests("paid", "2020-01-01", 4)
    status, body, _ = await call(gw, "GET", "/admin/report", bearer())
    assert status == 200
    rows = {(r["day"], r["route"]): r for r in body["rows"]}
    assert rows[("2020-01-01", "paid")]["paid_requests"] == 4
    today = [r for (day, route), r in rows.items() if route == "paid" and day != "2020-01-01"]
    assert [(r["settled_invoices"], r["revenue_msat"]) for r in today] == [(1, 10_000)]
    status, recent, _ = await call(gw, "GET", "/admin/report", bearer(), params={"days": "7"})
    assert status == 200
    assert ("2020-01-01", "paid") not in {(r["day"], r["route"]) for r in recent["rows"]}
    status, _, _ = await call(gw, "GET", "/admin/report", bearer(), params={"days": "0"})
    assert status == 400


async def test_routes_without_header_values(gw: InProcess) -> None:
    status, body, _ = await call(gw, "GET", "/admin/routes", bearer())
    assert status == 200
    routes = {r["name"]: r for r in body["routes"]}
    assert list(routes)[:3] == ["free", "paid", "once"]
    assert routes["paid"]["price_msat"] == 10_000
    assert routes["once"]["token_mode"] == "per-request"
    assert routes["paid"]["upstream_header_names"] == ["X-Api-Key"]
    assert UPSTREAM_KEY not in str(body)


async def test_reload_without_a_hook_says_so(gw: InProcess, aiohttp_server: Any) -> None:
    """An admin app built without a reload hook (GatewayServer and the supervisor pass one)."""
    admin = create_admin_app(gw.server.app, gw.server.metrics.registry)
    site = await aiohttp_server(admin, host="127.0.0.1")
    url = f"http://127.0.0.1:{site.port}/admin/reload"
    async with gw.session.post(url, headers=bearer()) as r:
        assert r.status == 501
        assert "SIGHUP" in (await r.json())["error"]


async def test_reload_through_the_server_hook(
    gw: InProcess, tmp_path: Path, aiohttp_server: Any
) -> None:
    """The hook GatewayServer passes: the same reload as SIGHUP, its errors returned."""
    server = gw.server
    admin = create_admin_app(
        server.app,
        server.metrics.registry,
        reload=server_reloader(server),
    )
    site = await aiohttp_server(admin, host="127.0.0.1")
    url = f"http://127.0.0.1:{site.port}"
    path = tmp_path / "routes.yaml"
    (tmp_path / "tls.cert").write_text("reload checks that the LND files exist")
    (tmp_path / "invoice.macaroon").write_text("x")
    doc = yaml.safe_load(path.read_text())
    doc["routes"] = doc["routes"][:2]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    async with gw.session.post(url + "/admin/reload", headers=bearer()) as r:
        assert (r.status, await r.json()) == (200, {"ok": True, "routes": 2, "errors": []})
    async with gw.session.get(url + "/admin/routes", headers=bearer()) as r:
        assert [route["name"] for route in (await r.json())["routes"]] == ["free", "paid"]
    async with gw.session.post(gw.url("/once")) as r:
        assert r.status == 404  # the route is gone

    doc["routes"][1]["price_sats"] = -1
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    async with gw.session.post(url + "/admin/reload", headers=bearer()) as r:
        body = await r.json()
        assert r.status == 422
        assert body["ok"] is False
        assert body["routes"] == 2  # the previous routes stay in force
        assert any(f"{path}:" in e and "routes[1].price_sats" in e for e in body["errors"])
    assert await gw.metric("l402_config_reloads_total", result="error") == 1
    async with gw.session.get(gw.url("/paid")) as r:
        assert r.status == 402
