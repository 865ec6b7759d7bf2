"""Typed failures: unreachable, timeout, body limits, disconnects, broken upstreams."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.proxy import BodyTooLarge, UpstreamTimeout, UpstreamUnreachable
from tests.proxy.servers import RigFactory
from tests.support.bodies import CHUNK


def _closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_upstream_down_is_unreachable(rig: RigFactory) -> None:
    r = await rig(upstream_url=f"http://127.0.0.1:{_closed_port()}/")
    async with r.gateway.get("/anything") as resp:
        assert resp.status == 502
        assert (await resp.json())["reason"] == "upstream_unreachable"
    [error] = r.state.errors
    assert isinstance(error, UpstreamUnreachable)
    assert error.status == 502


async def test_slow_upstream_times_out_within_timeout(rig: RigFactory) -> None:
    r = await rig(timeout_seconds=0.3)
    started = time.monotonic()
    async with r.gateway.get("/stall") as resp:
        elapsed = time.monotonic() - started
        assert resp.status == 504
        assert (await resp.json())["reason"] == "upstream_timeout"
    assert r.upstream_state.stall_entered.is_set()
    assert 0.3 <= elapsed < 2.0
    [error] = r.state.errors
    assert isinstance(error, UpstreamTimeout)
    # The proxy dropped the upstream connection: the upstream's handler is cancelled.
    await asyncio.wait_for(r.upstream_state.stall_cancelled.wait(), timeout=5)


async def test_declared_body_over_limit_never_reaches_upstream(rig: RigFactory) -> None:
    r = await rig(max_body_bytes=1000)
    async with r.gateway.post("/echo/big", data=b"x" * 1001) as resp:
        assert resp.status == 413
        assert (await resp.json())["reason"] == "body_too_large"
    [error] = r.state.errors
    assert isinstance(error, BodyTooLarge)
    assert error.declared == 1001
    assert r.upstream_state.requests == []
    # At the limit is fine, and the upstream records it: the check above is meaningful.
    async with r.gateway.post("/echo/ok", data=b"x" * 1000) as resp:
        assert resp.status == 200
    assert [e["path"] for e in r.upstream_state.requests] == ["/echo/ok"]


async def test_chunked_body_over_limit(rig: RigFactory) -> None:
    r = await rig(max_body_bytes=100_000)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * CHUNK

    async with r.gateway.post("/echo/chunked-big", data=body()) as resp:
        assert resp.status == 413
        assert (await resp.json())["reason"] == "body_too_large"
    [error] = r.state.errors
    assert isinstance(error, BodyTooLarge)
    assert error.declared is None
    assert r.upstream_state.requests == []


async def test_chunked_body_under_limit_passes(rig: RigFactory) -> None:
    r = await rig(max_body_bytes=4 * CHUNK)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"z" * CHUNK

    async with r.gateway.post("/big-upload", data=body()) as resp:
        assert resp.status == 200
        assert (await resp.json())["size"] == 4 * CHUNK


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_client_disconnect_releases_upstream(
    rig: RigFactory, handler_cancellation: bool
) -> None:
    r = await rig(handler_cancellation=handler_cancellation)
    resp = await r.gateway.get("/endless")
    assert resp.status == 200
    assert len(await resp.content.readany()) > 0
    resp.close()  # drop the connection mid-body
    await asyncio.wait_for(r.state.relayed.wait(), timeout=5)
    await asyncio.wait_for(r.upstream_state.endless_ended.wait(), timeout=5)
    [opened] = r.state.opened
    assert opened.client_disconnected
    assert opened.failure is None
    assert not opened.connection.usable  # the upstream connection was dropped, not pooled


async def test_upstream_failing_mid_body_truncates_client_response(rig: RigFactory) -> None:
    r = await rig()
    async with r.gateway.get("/truncated") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "100000"
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    await asyncio.wait_for(r.state.relayed.wait(), timeout=5)
    [opened] = r.state.opened
    assert isinstance(opened.failure, UpstreamUnreachable)
    assert opened.bytes_relayed == 1000
    assert not opened.client_disconnected
