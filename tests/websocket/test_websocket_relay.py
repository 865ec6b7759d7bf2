"""Messages, pings and close codes cross the gateway both ways, as each side sent them."""

from __future__ import annotations

import aiohttp
import pytest
import websockets
from aiohttp import WSCloseCode, WSMsgType

from tests.websocket.harness import Rig


async def test_text_and_binary_both_ways_on_a_free_route(rig: Rig) -> None:
    async with rig.connect("/free/chat?room=1") as ws:
        await ws.send_str("héllo")
        assert (await ws.receive()).data == "héllo"
        payload = bytes(range(256)) * 300
        await ws.send_bytes(payload)
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.BINARY, payload)
        await ws.close()
    assert rig.up.last.path == "/free/chat"
    assert rig.up.last.received == 2


async def test_client_close_code_and_reason_reach_the_upstream(rig: Rig) -> None:
    async with rig.connect("/free/ws") as ws:
        await ws.send_str("hi")
        await ws.receive()
        await ws.close(code=4001, message=b"done for today")
        assert ws.close_code == 4001  # the upstream's echo, passed back
    await rig.up.last.ended.wait()
    assert (rig.up.last.close_code, rig.up.last.close_reason) == (4001, "done for today")


async def test_upstream_close_code_and_reason_reach_the_client(rig: Rig) -> None:
    async with rig.connect("/free/ws") as ws:
        await ws.send_str("close:4002:come back later")
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4002, "come back later")
        await ws.close(code=4002)
    await rig.up.last.ended.wait()
    assert rig.up.last.close_code == 4002


async def test_a_ping_is_answered_by_the_upstream_not_the_gateway(rig: Rig) -> None:
    async with rig.connect("/free/ws") as ws:
        await ws.ping(b"are you there")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")
        assert rig.up.last.pings == [b"are you there"]
        await ws.close()


async def test_upstream_pings_reach_the_client(rig: Rig) -> None:
    async with rig.connect("/free/ws") as ws:
        await ws.send_str("ping:from upstream")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.PING, b"from upstream")
        await ws.close()


async def test_the_upstreams_subprotocol_choice_is_the_clients(rig: Rig) -> None:
    async with rig.connect("/free/ws", protocols=("chat.v1", "chat.v2")) as ws:
        # The upstream (aiohttp) takes the client's first offer it supports.
        assert ws.protocol == rig.up.last.protocol == "chat.v1"
        await ws.close()
    async with rig.connect("/free/ws", protocols=("other",)) as ws:
        assert ws.protocol is None
        assert rig.up.last.protocol is None
        await ws.close()


async def test_upstream_vanishing_is_1014_for_the_client(rig: Rig) -> None:
    async with rig.connect("/free/ws") as ws:
        await ws.send_str("drop")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.BAD_GATEWAY)
        await ws.close()


async def test_client_vanishing_is_1001_for_the_upstream(rig: Rig) -> None:
    async with websockets.connect(rig.url("/free/ws").replace("http", "ws", 1)) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        ws.transport.abort()  # the client's machine is gone: no close frame
    await rig.up.last.ended.wait()
    assert rig.up.last.close_code == WSCloseCode.GOING_AWAY


async def test_unpaid_upgrade_gets_the_402_challenge_and_no_upgrade(rig: Rig) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await rig.connect("/paid/ws")
    assert refused.value.status == 402
    assert refused.value.headers is not None
    schemes = [v.split(" ", 1)[0] for v in refused.value.headers.getall("WWW-Authenticate")]
    assert schemes == ["LSAT", "L402"]
    assert rig.up.sessions == []
    assert await rig.metric("l402_challenges_issued_total", route="paid") == 1
