"""Host and path spellings that reached a priced resource through a cheaper route (issue 15).

The upstream here is a real HTTP server that routes the way common upstreams
do, all at once (`lenient_upstream`): Tomcat/Spring strip `;...` path
parameters from each segment before resolving dot segments, some stacks decode
the path twice, and Express routes case-insensitively by default. Before the
fixes, each request below was priced as the free or cheap route, forwarded
unchanged, and served the priced resource by that upstream; now each is refused
(400) or priced. HTTP/1.1 and HTTP/2 (gRPC `:authority`) alike.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grpc
import pytest
from aiohttp import web

from tests.grpc.rig import SERVICE, UpstreamState, method, start_upstream
from tests.server.harness import InProcess, in_process

INTERNAL = "internal.example"
EVERY = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"


def lenient_route(raw_path: str) -> str:
    """The resource a lenient upstream serves for `raw_path`: path parameters cut from
    each segment, decoded twice, dot segments resolved, case folded."""
    segments = [segment.split(";", 1)[0] for segment in raw_path.split("/")]
    path = unquote(unquote("/".join(segments)))
    return posixpath.normpath(path).lower()


async def _serve(request: web.Request) -> web.Response:
    resolved = lenient_route(request.raw_path)
    served = resolved.strip("/").split("/", 1)[0] or "root"
    return web.json_response({"served": served, "raw_path": request.raw_path})


@pytest.fixture
async def lenient_upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _serve)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _routes(upstream: str, **patch: dict[str, Any]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {"name": "internal", "host": r"^internal\.example$", "path": "^/",
         "upstream": upstream, "price_sats": 50},
        {"name": "paid", "path": "^/paid/", "upstream": upstream, "price_sats": 10},
        {"name": "a", "path": "^/a/", "upstream": upstream, "price_sats": 1},
        {"name": "b", "path": "^/b/", "upstream": upstream, "price_sats": 500},
        {"name": "free", "path": "^/", "upstream": upstream, "price_sats": 0},
    ]  # fmt: skip
    for route in routes:
        route.update(patch.get(route["name"], {}))
    return routes


@pytest.fixture
async def gw(tmp_path: Path, lenient_upstream: str) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path, routes=_routes(lenient_upstream)) as running:
        yield running


async def _get(gw: InProcess, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
    async with gw.session.get(gw.url(path), headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body


def test_the_lenient_upstream_serves_the_priced_resource_for_each_spelling() -> None:
    """What the gateway must not forward unpaid: each spelling reaches /paid or /b."""
    assert lenient_route("/free/..;/paid/x") == "/paid/x"
    assert lenient_route("/a/..;/b/x") == "/b/x"
    assert lenient_route("/free/%252e%252e/paid/x") == "/paid/x"
    assert lenient_route("/PAID/x") == "/paid/x"


async def test_trailing_dot_or_case_in_host_is_the_same_host(gw: InProcess) -> None:
    for host in (INTERNAL, f"{INTERNAL}.", f"{INTERNAL}.:80", "Internal.EXAMPLE."):
        status, body = await _get(gw, "/report", Host=host)
        assert (status, body.get("route")) == (402, "internal"), host
    status, body = await _get(gw, "/report", Host="other.example")
    assert (status, body["served"]) == (200, "report")  # the free catch-all, as configured


@pytest.mark.parametrize(
    ("path", "served"),
    [("/free/..;/paid/x", "paid"), ("/free/%252e%252e/paid/x", "paid"), ("/x;a=b", "x")],
)
async def test_path_parameters_and_double_encoding_are_refused(
    gw: InProcess, path: str, served: str
) -> None:
    assert lenient_route(path).split("/")[1] == served  # what forwarding it would serve
    status, body = await _get(gw, path)
    assert (status, body["error"]) == (400, "bad_path"), body
    assert gw.invoices.calls == []


async def test_route_a_credential_cannot_reach_route_b_through_path_parameters(
    gw: InProcess,
) -> None:
    bought = await gw.buy("/a/x")
    status, body = await _get(gw, "/a/x", **bought.auth)
    assert (status, body["served"]) == (200, "a")
    status, body = await _get(gw, "/a/..;/b/x", **bought.auth)
    assert (status, body["error"]) == (400, "bad_path")


async def test_case_insensitive_route_prices_every_case(
    tmp_path: Path, lenient_upstream: str
) -> None:
    """`case_insensitive: true` is the setting for an upstream that routes like Express."""
    routes = _routes(lenient_upstream, paid={"case_insensitive": True})
    async with in_process(tmp_path, routes=routes) as gw:
        for path in ("/paid/x", "/PAID/x", "/Paid/x"):
            status, body = await _get(gw, path)
            assert (status, body.get("route")) == (402, "paid"), path


async def test_without_case_insensitive_other_cases_are_other_paths(gw: InProcess) -> None:
    """The default (documented): `/PAID/x` is not `/paid/x`, as RFC 3986 says; an
    upstream that folds case must have its priced routes marked `case_insensitive`."""
    status, body = await _get(gw, "/PAID/x")
    assert (status, body["served"]) == (200, "paid")


async def test_opt_outs_forward_what_the_operator_declared_plain(
    tmp_path: Path, lenient_upstream: str
) -> None:
    """`allow_path_parameters` / `allow_encoded_percent`: the route's upstream is declared
    to treat `;` and `%25` as plain characters, so they are forwarded unchanged."""
    routes = _routes(
        lenient_upstream,
        free={"allow_path_parameters": True, "allow_encoded_percent": True},
    )
    async with in_process(tmp_path, routes=routes) as gw:
        for path in ("/x;a=b", "/x%2525"):
            async with gw.session.get(gw.url(path)) as r:
                assert r.status == 200, path
                assert (await r.json())["raw_path"] == path


async def test_plain_options_on_a_priced_route_is_answered_without_minting(
    gw: InProcess,
) -> None:
    async with gw.session.options(gw.url("/paid/x")) as r:
        assert r.status == 204
        assert r.headers["Allow"] == EVERY
        assert await r.read() == b""
    assert gw.invoices.calls == []
    status, body = await _get(gw, "/paid/x")  # the route is still priced
    assert (status, body["route"]) == (402, "paid")


async def test_options_is_priced_only_where_the_route_lists_it(
    tmp_path: Path, lenient_upstream: str
) -> None:
    routes = _routes(lenient_upstream, a={"methods": ["GET", "OPTIONS"]}, b={"methods": ["GET"]})
    async with in_process(tmp_path, routes=routes) as gw:
        async with gw.session.options(gw.url("/a/x")) as r:
            assert r.status == 402  # the operator prices OPTIONS here
        async with gw.session.options(gw.url("/b/x")) as r:
            # every method: the free catch-all takes the others for this path
            assert (r.status, r.headers["Allow"]) == (204, EVERY)
        async with gw.session.head(gw.url("/b/x")) as r:
            assert r.status == 402  # HEAD is GET without the body: priced with it
        assert [call[0] for call in gw.invoices.calls] == [1000, 500_000]


# -- HTTP/2: the `:authority` of a gRPC call ------------------------------------------------


@pytest.fixture
async def grpc_upstream() -> AsyncIterator[int]:
    server, port = await start_upstream(UpstreamState())
    yield port
    await server.stop(grace=None)


async def test_grpc_authority_with_a_trailing_dot_is_priced(
    tmp_path: Path, grpc_upstream: int
) -> None:
    upstream = f"http://127.0.0.1:{grpc_upstream}"
    routes = [
        {"name": "internal", "host": r"^internal\.example$", "path": f"^/{SERVICE}/",
         "upstream": upstream, "price_sats": 50},
        {"name": "free", "path": "^/", "upstream": upstream, "price_sats": 0},
    ]  # fmt: skip
    async with in_process(tmp_path, routes=routes) as gw:
        for authority in (INTERNAL, f"{INTERNAL}.", "INTERNAL.example."):
            options = [("grpc.default_authority", authority)]
            target = f"127.0.0.1:{gw.server.public_port}"
            async with grpc.aio.insecure_channel(target, options=options) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await channel.unary_unary(method("Unary"))(b"hi", timeout=30)
            assert caught.value.details() == "payment required", authority
        assert [call[0] for call in gw.invoices.calls] == [50_000] * 3
