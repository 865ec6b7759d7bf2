"""Payment for WebSocket sessions: reusable tokens as for HTTP, per-request ones once per session.

A per-request lease is taken before the upstream handshake, committed on the
upstream's 101, and given back when the upstream refused, was unreachable or
did not answer in time, so the buyer's payment is never spent on a session
it did not get.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from tests.websocket.harness import AccessLog, Bought, Rig, serve_upstream_on


def handshake_headers(**extra: str) -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


async def refused(rig: Rig, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
    """An upgrade the gateway answers as HTTP: its status and JSON body."""
    async with rig.session.get(rig.url(path), headers=handshake_headers(**headers)) as r:
        assert r.status != 101
        return r.status, await r.json()


async def session_works(rig: Rig, path: str, bought: Bought) -> None:
    async with rig.connect(path, headers=bought.auth) as ws:
        await ws.send_str("paid for")
        assert (await ws.receive()).data == "paid for"
        await ws.close()


async def test_reusable_token_opens_many_sessions_with_one_authorization_upstream(
    rig: Rig,
) -> None:
    bought = await rig.buy("/paid/ws")
    extra = {"Macaroon": "00", "Grpc-Metadata-Macaroon": "00", "Origin": "http://app.example"}
    for _ in range(2):
        async with rig.connect("/paid/ws", headers=bought.auth | extra) as ws:
            await ws.send_str("x")
            await ws.receive()
            await ws.close()
    for seen in rig.up.sessions:
        names = [name.lower() for name, _ in seen.headers]
        authorization = [v for k, v in seen.headers if k.lower() == "authorization"]
        assert authorization == [bought.authorization]
        assert "macaroon" not in names
        assert "grpc-metadata-macaroon" not in names
        assert ("Origin", "http://app.example") in seen.headers
    assert await rig.metric("l402_paid_requests_total", route="paid") == 2
    assert await rig.metric("l402_upstream_requests_total", route="paid", status_class="1xx") == 2


async def test_route_without_forward_authorization_sends_its_own(rig: Rig) -> None:
    bought = await rig.buy("/noauth/ws")
    await session_works(rig, "/noauth/ws", bought)
    sent = [v for k, v in rig.up.last.headers if k.lower() == "authorization"]
    assert sent == ["Bearer upstream-key"]


async def test_per_request_token_buys_exactly_one_session(rig: Rig) -> None:
    bought = await rig.buy("/once/ws")
    await session_works(rig, "/once/ws", bought)
    status, body = await refused(rig, "/once/ws", **bought.auth)
    assert (status, body["reason"]) == (402, "already_used")
    assert "invoice" in body  # a fresh challenge to buy another session
    assert await rig.metric("l402_tokens_consumed_total", route="once") == 1
    assert len(rig.up.sessions) == 1


async def test_a_session_in_progress_holds_its_consumed_token(rig: Rig) -> None:
    bought = await rig.buy("/once/ws")
    async with rig.connect("/once/ws", headers=bought.auth) as ws:
        status, body = await refused(rig, "/once/ws", **bought.auth)
        assert (status, body["reason"]) == (402, "already_used")
        await ws.send_str("still mine")
        assert (await ws.receive()).data == "still mine"
        await ws.close()


async def test_upstream_refusing_the_upgrade_gives_the_token_back(rig: Rig) -> None:
    bought = await rig.buy("/once/ws")
    rig.up.refuse_status = 403
    status, body = await refused(rig, "/once/ws", **bought.auth)
    assert (status, body["error"]) == (502, "upgrade_refused")
    assert "403" in body["message"]
    assert "no WebSocket for you" not in str(body)
    assert await rig.metric("l402_tokens_consumed_total", route="once") == 0
    assert await rig.metric("l402_upstream_requests_total", route="once", status_class="4xx") == 1
    rig.up.refuse_status = None
    await session_works(rig, "/once/ws", bought)
    assert await rig.metric("l402_tokens_consumed_total", route="once") == 1


async def test_upstream_2xx_to_an_upgrade_buys_nothing_with_a_per_request_token(
    rig: Rig,
) -> None:
    """`Upgrade: websocket` must not turn a released lease into a free HTTP answer."""
    bought = await rig.buy("/once/ws")
    rig.up.refuse_status = 200
    status, body = await refused(rig, "/once/ws", **bought.auth)
    assert (status, body["error"]) == (502, "upgrade_refused")
    assert "no WebSocket for you" not in str(body)


async def test_unreachable_upstream_gives_the_token_back(rig: Rig) -> None:
    bought = await rig.buy("/later/ws")
    status, body = await refused(rig, "/later/ws", **bought.auth)
    assert (status, body["error"]) == (502, "upstream_unreachable")
    async with AsyncExitStack() as stack:
        later = await serve_upstream_on(rig.later_port, stack)
        await session_works(rig, "/later/ws", bought)
        assert len(later.sessions) == 1
    assert await rig.metric("l402_tokens_consumed_total", route="later") == 1


async def test_upstream_handshake_timeout_gives_the_token_back(rig: Rig) -> None:
    bought = await rig.buy("/slow/ws")
    rig.up.hang = True
    status, body = await refused(rig, "/slow/ws", **bought.auth)
    assert (status, body["error"]) == (504, "upstream_timeout")
    rig.up.hang = False
    await session_works(rig, "/slow/ws", bought)


async def test_concurrent_handshake_with_the_same_token_is_409(rig: Rig) -> None:
    bought = await rig.buy("/slow/ws")
    rig.up.hang = True
    first = asyncio.create_task(refused(rig, "/slow/ws", **bought.auth))
    await rig.up.hanging.wait()
    status, body = await refused(rig, "/slow/ws", **bought.auth)
    assert (status, body["error"]) == (409, "in_use")
    assert (await first)[0] == 504


async def test_invalid_client_handshake_is_400_and_keeps_the_token(rig: Rig) -> None:
    bought = await rig.buy("/once/ws")
    status, body = await refused(rig, "/once/ws", **bought.auth, **{"Sec-WebSocket-Version": "12"})
    assert (status, body["error"]) == (400, "bad_websocket_handshake")
    assert rig.up.sessions == []
    await session_works(rig, "/once/ws", bought)


async def test_session_cap_is_503_and_frees_its_slot(rig: Rig, access: AccessLog) -> None:
    rig.websockets.max_sessions = 1
    bought = await rig.buy("/once/ws")
    async with rig.connect("/free/ws") as ws:
        assert rig.websockets.open_sessions == 1
        status, body = await refused(rig, "/once/ws", **bought.auth)
        assert (status, body["error"]) == (503, "websocket_capacity")
        await ws.close()
    await access.wait_for("free", "websocket_client_closed")
    assert rig.websockets.open_sessions == 0
    await session_works(rig, "/once/ws", bought)  # not consumed by the 503


async def test_shutdown_closes_sessions_with_1001(rig: Rig) -> None:
    async with rig.connect("/free/ws") as ws:
        await ws.send_str("x")
        await ws.receive()
        await rig.websockets.shutdown()
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (
            aiohttp.WSMsgType.CLOSE,
            1001,
            "gateway shutting down",
        )
        await ws.close()
    await rig.up.last.ended.wait()
    assert rig.up.last.close_code == 1001


@pytest.mark.parametrize("scheme", ["L402", "LSAT"])
async def test_either_scheme_is_forwarded_in_canonical_form(rig: Rig, scheme: str) -> None:
    bought = await rig.buy("/paid/ws")
    headers = {"Authorization": f"{scheme} {bought.macaroon}:{bought.preimage}"}
    async with rig.connect("/paid/ws", headers=headers) as ws:
        await ws.close()
    sent = [v for k, v in rig.up.last.headers if k.lower() == "authorization"]
    assert sent == [bought.authorization]


async def test_access_log_has_the_session_and_no_secrets(
    rig: Rig, access: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bought = await rig.buy("/paid/ws")
    async with rig.connect("/paid/ws", headers=bought.auth) as ws:
        await ws.send_str("drop")  # an upstream failure on the way
        assert (await ws.receive()).data == 1014
        await ws.close()
    record = await access.wait_for("paid", "websocket_upstream_failed")
    fields = record.__dict__
    assert (fields["status"], fields["upstream_status"]) == (101, 101)
    assert fields["token_id"]
    assert "1014" in fields["error"]
    rig.up.refuse_status = 403
    await refused(rig, "/paid/ws", **bought.auth)
    everything = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert bought.macaroon not in everything
    assert bought.preimage not in everything


async def test_only_a_get_is_upgraded(rig: Rig) -> None:
    """A POST carrying WebSocket headers is plain HTTP: forwarded without `Upgrade`."""
    async with rig.session.post(rig.url("/free/ws"), headers=handshake_headers()) as r:
        assert r.status == 405  # the upstream's answer: its WebSocket endpoint takes GET only
    assert rig.up.sessions == []
