"""End to end through a real gateway and upstream on 127.0.0.1: what passes, what not."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.proxy.servers import GZIP_BODY, RigFactory


def _upstream_headers(entry: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in entry["headers"] if key.lower() == name.lower()]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_method_path_query_and_body_pass_through(rig: RigFactory, method: str) -> None:
    r = await rig()
    body = b"" if method in ("GET", "DELETE") else b'{"prompt": "hi"}'
    async with r.gateway.request(
        method,
        "/echo/a%20b/c%C3%A9?x=1&x=2&y=%20z",
        data=body or None,
        headers={"Content-Type": "application/json", "X-Custom": "v"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["X-Upstream"] == "echo"
        seen = await resp.json()
    assert seen["method"] == method
    assert seen["path"] == "/echo/a%20b/c%C3%A9?x=1&x=2&y=%20z"
    assert seen["body"] == body.decode()
    assert _upstream_headers(seen, "X-Custom") == ["v"]
    host = r.upstream.make_url("/").raw_authority
    assert _upstream_headers(seen, "Host") == [host]
    assert len(r.upstream_state.requests) == 1


async def test_chunked_request_body_is_streamed_upstream(rig: RigFactory) -> None:
    r = await rig()

    async def parts() -> Any:
        for part in (b"alpha-", b"beta-", b"gamma"):
            yield part

    async with r.gateway.post("/echo/chunked", data=parts()) as resp:
        seen = await resp.json()
    assert seen["body"] == "alpha-beta-gamma"
    assert _upstream_headers(seen, "Transfer-Encoding") == ["chunked"]
    assert _upstream_headers(seen, "Content-Length") == []


async def test_no_headers_invented_by_client_library(rig: RigFactory) -> None:
    r = await rig()
    async with r.gateway.get(
        "/echo/bare", skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent")
    ) as resp:
        seen = await resp.json()
    for name in ("Accept", "Accept-Encoding", "User-Agent", "Content-Type"):
        assert _upstream_headers(seen, name) == [], name


async def test_hop_by_hop_headers_dropped_both_ways(rig: RigFactory) -> None:
    r = await rig()
    async with r.gateway.get(
        "/echo/hop",
        headers={
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Tail",
            "Proxy-Authorization": "Basic eDp5",
            "X-End-To-End": "kept",
        },
    ) as resp:
        seen = await resp.json()
    names = {key.lower() for key, _ in seen["headers"]}
    for dropped in ("x-hop", "keep-alive", "te", "trailer", "proxy-authorization"):
        assert dropped not in names, dropped
    assert _upstream_headers(seen, "X-End-To-End") == ["kept"]
    assert all("x-hop" not in v.lower() for v in _upstream_headers(seen, "Connection"))

    async with r.gateway.get("/hop") as resp:
        assert await resp.text() == "hop"
        assert "X-Resp-Hop" not in resp.headers
        assert "Keep-Alive" not in resp.headers
        assert "Proxy-Authenticate" not in resp.headers
        assert "x-resp-hop" not in resp.headers.get("Connection", "").lower()
        assert resp.headers["X-End-To-End"] == "kept"
        assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


async def test_upstream_cookies_are_not_shared_between_clients(rig: RigFactory) -> None:
    r = await rig()
    async with r.gateway.get("/hop") as resp:
        assert resp.status == 200
    # A different client, without cookies of its own: nothing may arrive upstream.
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other,
        other.get(f"http://{r.gateway_authority}/echo/after") as resp,
    ):
        seen = await resp.json()
    assert _upstream_headers(seen, "Cookie") == []


async def test_exactly_one_authorization_forwarded(rig: RigFactory) -> None:
    r = await rig(authorization="L402 bWFjYXJvb24=:" + "ab" * 32)
    headers = CIMultiDict(
        [
            ("Authorization", "LSAT client-one:" + "cd" * 32),
            ("Authorization", "L402 client-two:" + "ef" * 32),
            ("Grpc-Metadata-Macaroon", "0201"),
            ("Macaroon", "0201"),
        ]
    )
    async with r.gateway.get("/echo/auth", headers=headers) as resp:
        seen = await resp.json()
    assert _upstream_headers(seen, "Authorization") == ["L402 bWFjYXJvb24=:" + "ab" * 32]
    assert _upstream_headers(seen, "Grpc-Metadata-Macaroon") == []
    assert _upstream_headers(seen, "Macaroon") == []


async def test_no_authorization_forwarded_when_none(rig: RigFactory) -> None:
    r = await rig(authorization=None)
    headers = CIMultiDict([("Authorization", "L402 a:b"), ("Authorization", "Bearer x")])
    async with r.gateway.get("/echo/noauth", headers=headers) as resp:
        seen = await resp.json()
    assert _upstream_headers(seen, "Authorization") == []


async def test_xff_believed_from_trusted_peer(rig: RigFactory) -> None:
    r = await rig(trusted=("127.0.0.0/8", "10.0.0.0/8"), extra_headers={"X-Api-Key": "k"})
    async with r.gateway.get(
        "/echo/xff",
        headers={
            "X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.5",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "l402.example",
        },
    ) as resp:
        seen = await resp.json()
    assert r.state.client_ips == ["203.0.113.9"]
    assert _upstream_headers(seen, "X-Forwarded-For") == ["203.0.113.9, 10.0.0.5, 127.0.0.1"]
    assert _upstream_headers(seen, "X-Forwarded-Proto") == ["https"]
    assert _upstream_headers(seen, "X-Forwarded-Host") == ["l402.example"]
    assert _upstream_headers(seen, "X-Api-Key") == ["k"]


async def test_xff_ignored_from_untrusted_peer(rig: RigFactory) -> None:
    r = await rig(trusted=("10.0.0.0/8",))
    async with r.gateway.get(
        "/echo/xff",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "spoofed.example",
        },
    ) as resp:
        seen = await resp.json()
    assert r.state.client_ips == ["127.0.0.1"]
    assert _upstream_headers(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert _upstream_headers(seen, "X-Forwarded-Proto") == ["http"]
    assert _upstream_headers(seen, "X-Forwarded-Host") == [r.gateway_authority]


async def test_gzip_body_passes_byte_identical(rig: RigFactory) -> None:
    r = await rig(client_kwargs={"auto_decompress": False})
    async with r.gateway.get("/gzip", headers={"Accept-Encoding": "gzip"}) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Length"] == str(len(GZIP_BODY))
    assert raw == GZIP_BODY
    assert json.loads(gzip.decompress(raw)[:29]) == {"hello": "compressed world"}


async def test_chunked_upstream_response_streams(rig: RigFactory) -> None:
    r = await rig()
    async with r.gateway.get("/chunked") as resp:
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in resp.headers
        assert await resp.read() == b"one,two,three"
    assert r.state.opened[0].bytes_relayed == len(b"one,two,three")
    assert r.state.opened[0].failure is None


async def test_redirects_are_relayed_not_followed(rig: RigFactory) -> None:
    r = await rig()
    async with r.gateway.get("/redirect", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/elsewhere"
    assert [e["path"] for e in r.upstream_state.requests] == ["/redirect"]


async def test_path_rewrite_and_upstream_base_path(rig: RigFactory) -> None:
    r = await rig(path_rewrite=(r"^/public/", "/"))
    base = str(r.upstream.make_url("/echo/"))
    r2 = await rig(upstream_url=base)
    async with r.gateway.get("/public/echo/x?q=1") as resp:
        assert (await resp.json())["path"] == "/echo/x?q=1"
    async with r2.gateway.get("/y") as resp:
        assert (await resp.json())["path"] == "/echo/y"


async def test_head_keeps_content_length_without_body(rig: RigFactory) -> None:
    r = await rig(client_kwargs={"auto_decompress": False})
    async with r.gateway.head("/gzip") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(GZIP_BODY))
        assert await resp.read() == b""
    assert [e["method"] for e in r.upstream_state.requests] == ["HEAD"]
