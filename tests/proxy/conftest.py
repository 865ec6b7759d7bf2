"""Fixtures: a real upstream and a tiny gateway mounting the proxy, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.proxy import ProxyTarget
from tests.proxy.servers import (
    UPSTREAM_KEY,
    GatewayState,
    Rig,
    RigFactory,
    make_gateway_app,
    make_upstream_app,
)


@pytest.fixture
async def upstream_server(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> TestServer:
    return await aiohttp_server(make_upstream_app())


@pytest.fixture
async def rig(upstream_server: TestServer) -> AsyncIterator[RigFactory]:
    """Build gateways in front of the upstream with per-test proxy settings."""
    async with contextlib.AsyncExitStack() as stack:

        async def build(
            *,
            upstream_url: str | None = None,
            trusted: tuple[str, ...] = (),
            authorization: str | None = None,
            handler_cancellation: bool = False,
            client_kwargs: dict[str, Any] | None = None,
            **target_kwargs: Any,
        ) -> Rig:
            url = upstream_url or str(upstream_server.make_url("/"))
            state = GatewayState(
                target=ProxyTarget.create(url, **target_kwargs),
                trusted=tuple(ipaddress.ip_network(t) for t in trusted),
                authorization=authorization,
            )
            # aiohttp's own default (run_app, AppRunner) is handler_cancellation=False.
            runner = web.AppRunner(
                make_gateway_app(state), handler_cancellation=handler_cancellation
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            session = aiohttp.ClientSession(
                base_url=f"http://127.0.0.1:{port}", **(client_kwargs or {})
            )
            stack.push_async_callback(session.close)
            return Rig(
                upstream_server,
                upstream_server.app[UPSTREAM_KEY],
                session,
                f"127.0.0.1:{port}",
                state,
            )

        yield build
