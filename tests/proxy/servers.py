"""Real upstream and gateway apps for the proxy tests (served on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.http.clientinfo import IPNetwork
from gateway.http.paths import normalize
from gateway.proxy import ClientInfo, Proxy, ProxyError, ProxyTarget, UpstreamResponse
from tests.support.bodies import pattern_chunk, pattern_stream

GZIP_BODY = gzip.compress(b'{"hello": "compressed world"}' * 200, mtime=0)


@dataclass
class UpstreamState:
    """What the upstream saw, plus events the tests synchronise on."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)
    stall_entered: asyncio.Event = field(default_factory=asyncio.Event)
    stall_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    endless_ended: asyncio.Event = field(default_factory=asyncio.Event)


UPSTREAM_KEY = web.AppKey("upstream_state", UpstreamState)


def _record(request: web.Request, **extra: Any) -> dict[str, Any]:
    entry = {
        "method": request.method,
        "path": request.raw_path,
        "headers": list(request.headers.items()),
        **extra,
    }
    request.app[UPSTREAM_KEY].requests.append(entry)
    return entry


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    entry = _record(request, body=body.decode("latin-1"))
    return web.json_response(entry, headers={"X-Upstream": "echo"})


async def gzipped(request: web.Request) -> web.Response:
    _record(request)
    return web.Response(
        body=GZIP_BODY,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


async def hop_headers(request: web.Request) -> web.Response:
    _record(request)
    response = web.Response(text="hop")
    response.headers["Connection"] = "X-Resp-Hop"
    response.headers["X-Resp-Hop"] = "secret-hop"
    response.headers["Keep-Alive"] = "timeout=5"
    response.headers["Proxy-Authenticate"] = "Basic"
    response.headers["X-End-To-End"] = "kept"
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    return response


async def redirect(request: web.Request) -> web.Response:
    _record(request)
    raise web.HTTPFound("/elsewhere")


async def chunked(request: web.Request) -> web.StreamResponse:
    _record(request)
    response = web.StreamResponse()
    await response.prepare(request)
    for part in (b"one,", b"two,", b"three"):
        await response.write(part)
    await response.write_eof()
    return response


async def stall(request: web.Request) -> web.Response:
    state = request.app[UPSTREAM_KEY]
    _record(request)
    state.stall_entered.set()
    try:
        await state.never.wait()  # never set: the upstream simply does not answer
    except asyncio.CancelledError:
        state.stall_cancelled.set()
        raise
    return web.Response(text="unreachable")


async def big_upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    _record(request, size=size)
    return web.json_response({"size": size, "sha256": digest.hexdigest()})


async def big_download(request: web.Request) -> web.StreamResponse:
    _record(request)
    total = int(request.query["size"])
    response = web.StreamResponse()
    response.content_length = total
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    async for chunk in pattern_stream(total):
        await response.write(chunk)
    await response.write_eof()
    return response


async def endless(request: web.Request) -> web.StreamResponse:
    _record(request)
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        index = 0
        while True:
            await response.write(pattern_chunk(index))
            index += 1
    except ConnectionError:
        return response
    finally:
        # Reached only when the proxy drops the connection (write error or cancellation).
        request.app[UPSTREAM_KEY].endless_ended.set()


async def truncated(request: web.Request) -> web.StreamResponse:
    _record(request)
    response = web.StreamResponse()
    response.content_length = 100_000
    await response.prepare(request)
    await response.write(b"x" * 1000)
    request.protocol.force_close()
    return response


def make_upstream_app() -> web.Application:
    app = web.Application()
    app[UPSTREAM_KEY] = UpstreamState()
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/hop", hop_headers)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/stall", stall)
    app.router.add_post("/big-upload", big_upload)
    app.router.add_get("/big-download", big_download)
    app.router.add_get("/endless", endless)
    app.router.add_get("/truncated", truncated)
    return app


@dataclass
class GatewayState:
    """The tiny gateway's configuration and what its handler observed."""

    target: ProxyTarget
    trusted: tuple[IPNetwork, ...] = ()
    authorization: str | None = None
    errors: list[ProxyError] = field(default_factory=list)
    opened: list[UpstreamResponse] = field(default_factory=list)
    client_ips: list[str] = field(default_factory=list)
    relayed: asyncio.Event = field(default_factory=asyncio.Event)


GATEWAY_KEY = web.AppKey("gateway_state", GatewayState)
PROXY_KEY = web.AppKey("proxy", Proxy)


async def proxy_ctx(app: web.Application) -> AsyncIterator[None]:
    proxy = Proxy.create()
    app[PROXY_KEY] = proxy
    yield
    await proxy.close()


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[GATEWAY_KEY]
    proxy = request.app[PROXY_KEY]
    headers = request.headers
    client = ClientInfo.resolve(
        request.remote,
        headers.getall("X-Forwarded-For", []),
        headers.getall("X-Forwarded-Proto", []),
        headers.getall("X-Forwarded-Host", []),
        request.scheme,
        request.host,
        state.trusted,
    )
    state.client_ips.append(client.address)
    path = normalize(request.rel_url.raw_path).raw
    try:
        opened = await proxy.open(request, state.target, path, client, state.authorization)
    except ProxyError as exc:
        state.errors.append(exc)
        return web.json_response({"reason": exc.reason}, status=exc.status)
    state.opened.append(opened)
    try:
        return await proxy.relay(request, opened)
    finally:
        state.relayed.set()


def make_gateway_app(state: GatewayState) -> web.Application:
    app = web.Application()
    app[GATEWAY_KEY] = state
    app.cleanup_ctx.append(proxy_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy_handler)
    return app


@dataclass
class Rig:
    upstream: TestServer
    upstream_state: UpstreamState
    gateway: aiohttp.ClientSession
    """A client session whose base_url is the gateway."""
    gateway_authority: str
    state: GatewayState


RigFactory = Callable[..., Awaitable[Rig]]
