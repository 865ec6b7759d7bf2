"""`/.well-known/l402.json` on the public listener: shape, caching, CORS, precedence over
routes (never priced, never forwarded), reloads, hosts. In-process gateway (real server,
real SQLite, real upstream; LND's invoice role is the named fake)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.model import DISCOVERY_MANIFEST_PATH
from tests.pricing.harness import gateway_with, hooked_route, pricing_service
from tests.server.harness import InProcess

MANIFEST = DISCOVERY_MANIFEST_PATH
Edit = Callable[[dict[str, Any], str], None]


def _keep(doc: dict[str, Any], upstream: str) -> None:
    del doc, upstream


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with gateway_with(tmp_path, _keep) as running:
        yield running


async def _manifest(gw: InProcess, **kw: Any) -> tuple[int, Any, dict[str, Any]]:
    async with gw.session.get(gw.url(MANIFEST), **kw) as r:
        return r.status, r.headers, await r.json()


def _resources(document: dict[str, Any], route: str) -> list[dict[str, Any]]:
    return [
        resource
        for service in document["services"]
        for resource in service["resources"]
        if resource["route"] == route
    ]


async def test_manifest_shape(gw: InProcess) -> None:
    status, headers, doc = await _manifest(gw)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Cache-Control"] == "public, max-age=300"
    assert headers["ETag"].startswith('"')
    assert "Link" not in headers  # no OpenAPI document configured
    assert doc["version"] == "1.0"
    assert doc["provider"] == {"name": "l402-gateway"}
    assert doc["currencies"] == ["msat"]
    assert doc["macaroon_versions"] == [0]
    assert doc["payment_methods"] == ["bolt11"]
    assert "openapi" not in doc
    # Priced routes in table order, one service each (the route name is the service); free
    # routes are left out.
    names = [service["name"] for service in doc["services"]]
    assert names == ["paid", "once", "expiring", "cap", "held", "reads"]
    assert _resources(doc, "paid") == [
        {
            "pricing": {"model": "fixed", "price_msat": 10_000},
            "route": "paid",
            "path_regex": "^/paid",
            "methods": None,
            "token_mode": "reusable",
            "token_validity_seconds": None,
        }
    ]
    (once,) = _resources(doc, "once")
    assert (once["method"], once["token_mode"], "path" in once) == ("POST", "per-request", False)
    (expiring,) = _resources(doc, "expiring")
    assert (expiring["path"], expiring["token_validity_seconds"]) == ("/expiring", 60)
    (cap,) = _resources(doc, "cap")
    assert (cap["capability"], cap["token_capabilities"]) == ("write", ["read", "write"])
    cap_service = next(s for s in doc["services"] if s["name"] == "cap")
    assert cap_service["capabilities"] == ["read", "write"]
    reads = _resources(doc, "reads")
    assert [(r["method"], r["path"]) for r in reads] == [
        ("GET", "/resource"),
        ("HEAD", "/resource"),
    ]
    assert doc["caveats"]["services"] == {"type": "service_list", "attenuation": "subset"}
    assert doc["caveats"]["cap_capabilities"]["attenuation"] == "subset"
    assert doc["caveats"]["expiring_valid_until"] == {
        "type": "timestamp",
        "attenuation": "earlier",
    }
    assert "paid_valid_until" not in doc["caveats"]
    # Discovery minted nothing and forwarded nothing.
    assert gw.invoices.calls == []
    assert gw.seen.requests == []


async def test_head_and_conditional_requests(gw: InProcess) -> None:
    _, headers, _ = await _manifest(gw)
    etag = headers["ETag"]
    async with gw.session.head(gw.url(MANIFEST)) as r:
        assert (r.status, r.headers["ETag"], await r.read()) == (200, etag, b"")
        assert int(r.headers["Content-Length"]) > 100
    for offered in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        async with gw.session.get(gw.url(MANIFEST), headers={"If-None-Match": offered}) as r:
            assert (r.status, await r.read()) == (304, b""), offered
            assert r.headers["ETag"] == etag
            assert r.headers["Access-Control-Allow-Origin"] == "*"
    async with gw.session.get(gw.url(MANIFEST), headers={"If-None-Match": '"old"'}) as r:
        assert r.status == 200


async def test_preflight_and_other_methods(gw: InProcess) -> None:
    preflight = {
        "Origin": "https://agent.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match",
    }
    async with gw.session.options(gw.url(MANIFEST), headers=preflight) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
        assert r.headers["Access-Control-Allow-Headers"] == "if-none-match"
    async with gw.session.post(gw.url(MANIFEST), data=b"{}") as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert gw.invoices.calls == []
    assert gw.seen.requests == []


def _catch_all(doc: dict[str, Any], upstream: str) -> None:
    doc["routes"].append({"name": "all", "path": "^/", "upstream": upstream, "price_sats": 1})


async def test_never_priced_or_forwarded_even_behind_a_priced_catch_all(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, _catch_all) as gw:
        for spelling in (
            MANIFEST,
            MANIFEST + "?refresh=1",
            "//.well-known/l402.json",
            "/%2Ewell-known/l402.json",
            "/.well-known/./l402.json",
            "/x/../.well-known/%6C402.json",
        ):
            async with gw.session.get(gw.url(spelling)) as r:
                assert r.status == 200, spelling
                assert (await r.json())["version"] == "1.0"
        assert gw.invoices.calls == []
        assert gw.seen.requests == []
        # The catch-all is live for every other path, under /.well-known too.
        await gw.challenge("/.well-known/other.json")
        assert "all" in [s["name"] for s in (await _manifest(gw))[2]["services"]]


async def test_disabled_discovery_leaves_the_path_to_the_routes(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any], upstream: str) -> None:
        _catch_all(doc, upstream)
        doc["discovery"] = {"enabled": False}

    async with gateway_with(tmp_path, edit) as gw:
        challenge = await gw.challenge(MANIFEST)
        assert challenge["route"] == "all"


async def test_reload_updates_the_manifest(tmp_path: Path, gw: InProcess) -> None:
    _, before_headers, before = await _manifest(gw)
    assert _resources(before, "paid")[0]["pricing"]["price_msat"] == 10_000
    path = tmp_path / "routes.yaml"
    doc = yaml.safe_load(path.read_text())
    next(r for r in doc["routes"] if r["name"] == "paid")["price_sats"] = 12
    doc["discovery"] = {"provider_name": "Example API", "max_age_seconds": 60}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert gw.server.reload(path)
    _, headers, after = await _manifest(gw, headers={"If-None-Match": before_headers["ETag"]})
    assert _resources(after, "paid")[0]["pricing"]["price_msat"] == 12_000
    assert after["provider"] == {"name": "Example API"}
    assert headers["ETag"] != before_headers["ETag"]
    assert headers["Cache-Control"] == "public, max-age=60"


async def test_host_specific_routes_appear_only_for_their_host(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any], upstream: str) -> None:
        doc["routes"].insert(
            0,
            {
                "name": "api-only",
                "host": r"^api\.example$",
                "path": "^/paid$",
                "upstream": upstream,
                "price_sats": 99,
            },
        )

    async with gateway_with(tmp_path, edit) as gw:
        _, _, other = await _manifest(gw, headers={"Host": "www.example"})
        _, _, api = await _manifest(gw, headers={"Host": "api.example:8443"})
        assert "api-only" not in [s["name"] for s in other["services"]]
        (only,) = _resources(api, "api-only")
        assert (only["path"], only["pricing"]["price_msat"]) == ("/paid", 99_000)
        # `/paid` is api-only's on that host, so the `paid` route gives no literal path there.
        assert "path" not in _resources(api, "paid")[0]


async def test_a_hooked_route_is_listed_as_dynamic(tmp_path: Path) -> None:
    async with pricing_service() as hook:

        def edit(doc: dict[str, Any], upstream: str) -> None:
            doc["routes"].insert(0, hooked_route(upstream, hook.url))

        async with gateway_with(tmp_path, edit) as gw:
            _, _, doc = await _manifest(gw)
        (dyn,) = _resources(doc, "dyn")
        assert dyn["pricing"] == {
            "model": "dynamic",
            "fallback_price_msat": 9_000,
            "max_price_msat": 500_000,
        }
        assert hook.state.calls == []  # listing a dynamic price asks nobody


async def test_the_access_log_says_discovery(
    gw: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="gateway.access"):
        await _manifest(gw)
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    assert record.__dict__["outcome"] == "discovery"
    assert record.__dict__["route"] is None
    assert record.__dict__["status"] == 200
