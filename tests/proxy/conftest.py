"""Fixtures: a real upstream and a tiny gateway mounting the proxy, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config.model import PathRewrite, Route
from gateway.proxy import ProxyTarget
from tests.proxy.servers import (
    UPSTREAM_KEY,
    GatewayState,
    Rig,
    RigFactory,
    make_gateway_app,
    make_upstream_app,
)


def _route_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The rig's short names for route settings."""
    settings = dict(kwargs)
    if "timeout_seconds" in settings:
        settings["upstream_timeout_seconds"] = settings.pop("timeout_seconds")
    if "extra_headers" in settings:
        settings["upstream_headers"] = tuple(settings.pop("extra_headers").items())
    if "path_rewrite" in settings:
        pattern, replacement = settings.pop("path_rewrite")
        settings["path_rewrite"] = PathRewrite(re.compile(pattern), replacement)
    return settings


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
            route = Route(
                name="proxied",
                path=re.compile("^/"),
                upstream=url,
                price_msat=0,
                **_route_settings(target_kwargs),
            )
            state = GatewayState(
                target=ProxyTarget.for_route(route),
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
