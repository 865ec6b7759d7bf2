"""Fixtures: a real grpc.aio upstream, and the engine on an aiohttp runner's port (127.0.0.1)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from aiohttp import web

from gateway.h2engine import H2Limits, H2Proxy, H2Site, H2Target
from tests.grpc.rig import TestAdmission, UpstreamState, start_upstream


@dataclass
class Upstream:
    state: UpstreamState
    server: grpc.aio.Server
    port: int

    def target(self, **overrides: object) -> H2Target:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "tls": None,
            "authority": f"127.0.0.1:{self.port}",
            "connect_timeout": 5.0,
        }
        values.update(overrides)
        return H2Target(**values)  # type: ignore[arg-type]


@dataclass
class Gateway:
    admission: TestAdmission
    proxy: H2Proxy
    site: H2Site
    runner: web.AppRunner
    channel: grpc.aio.Channel

    @property
    def port(self) -> int:
        return self.site.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


GatewayFactory = Callable[..., Awaitable[Gateway]]


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello over HTTP/1.1")


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = UpstreamState()
    server, port = await start_upstream(state)
    yield Upstream(state, server, port)
    await server.stop(None)


@pytest.fixture
async def make_gateway(upstream: Upstream) -> AsyncIterator[GatewayFactory]:
    """Build gateways (HTTP/1.1 app + engine on one port) in front of `upstream`."""
    async with contextlib.AsyncExitStack() as stack:

        async def build(
            *,
            target: H2Target | None = None,
            limits: H2Limits | None = None,
            admission: type[TestAdmission] = TestAdmission,
        ) -> Gateway:
            decider = admission(target or upstream.target())
            app = web.Application()
            app.router.add_get("/hello", hello)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            proxy = H2Proxy(decider, limits)
            stack.push_async_callback(proxy.close)
            site = H2Site(runner, proxy, "127.0.0.1", 0, shutdown_timeout=5.0)
            await site.start()
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{site.port}")
            stack.push_async_callback(channel.close)
            return Gateway(decider, proxy, site, runner, channel)

        yield build


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway()
