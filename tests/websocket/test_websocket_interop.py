"""A second, independent WebSocket implementation on each side: the `websockets` package.

It sends fragmented messages (aiohttp's client cannot), validates every frame
the gateway writes, and reports close codes as it received them.
"""

from __future__ import annotations

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.websocket.harness import Rig


def ws_url(rig: Rig, path: str) -> str:
    return f"ws://127.0.0.1:{rig.server.public_port}{path}"


async def test_websockets_client_to_websockets_upstream(rig: Rig) -> None:
    async with websockets.connect(ws_url(rig, "/lib/echo")) as ws:
        await ws.send("text ✓")
        assert await ws.recv() == "text ✓"
        await ws.send(b"\x00\xffbinary")
        assert await ws.recv() == b"\x00\xffbinary"
        await ws.close(code=4003, reason="client says bye")
    assert (ws.close_code, ws.close_reason) == (4003, "")  # answered with its own code
    await rig.lib.ended.wait()
    assert rig.lib.close_codes == [4003]


async def test_fragmented_messages_cross_whole_both_ways(rig: Rig) -> None:
    async with websockets.connect(ws_url(rig, "/free/echo")) as ws:
        await ws.send(["frag", "men", "ted"])  # one text message in three frames
        assert await ws.recv() == "fragmented"
        await ws.send([b"\x01", b"\x02\x03"])
        assert await ws.recv() == b"\x01\x02\x03"
    async with websockets.connect(ws_url(rig, "/lib/echo")) as ws:
        await ws.send("fragments")  # the upstream answers in three frames
        assert await ws.recv() == "one two three"


async def test_upstream_close_reaches_a_websockets_client(rig: Rig) -> None:
    async with websockets.connect(ws_url(rig, "/free/echo")) as ws:
        await ws.send("close:4010:maintenance")
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (4010, "maintenance")


async def test_ping_from_a_websockets_client_is_answered_end_to_end(rig: Rig) -> None:
    async with websockets.connect(ws_url(rig, "/free/echo"), ping_interval=None) as ws:
        pong = await ws.ping(b"lib-ping")
        latency = await pong
        assert latency >= 0
    assert rig.up.last.pings == [b"lib-ping"]


async def test_per_request_token_with_a_websockets_client(rig: Rig) -> None:
    bought = await rig.buy("/libonce/echo")
    async with websockets.connect(
        ws_url(rig, "/libonce/echo"), additional_headers=bought.auth
    ) as ws:
        await ws.send("paid")
        assert await ws.recv() == "paid"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await _connect(rig, "/libonce/echo", bought.auth)
    assert refused.value.response.status_code == 402
    assert await rig.metric("l402_tokens_consumed_total", route="libonce") == 1


async def _connect(rig: Rig, path: str, headers: dict[str, str]) -> ClientConnection:
    return await websockets.connect(ws_url(rig, path), additional_headers=headers)
