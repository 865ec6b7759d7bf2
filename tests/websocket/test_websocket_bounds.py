"""Every session is bounded: message size, idle time, and memory when a reader is slow."""

from __future__ import annotations

import asyncio
import hashlib
import time
import tracemalloc

from aiohttp import WSCloseCode, WSMsgType

from tests.support.bodies import CHUNK, pattern_chunk
from tests.websocket.harness import SMALL_LIMIT, AccessLog, Rig

FLOOD_MESSAGES = 1024  # 64 MiB offered by the upstream
SENT_BOUND = 24 * 1024 * 1024  # what may sit in socket buffers and the gateway together
PEAK_LIMIT = 8 * 1024 * 1024


async def test_client_message_over_the_limit_is_1009_and_never_reaches_upstream(
    rig: Rig,
) -> None:
    async with rig.connect("/small/ws") as ws:
        await ws.send_bytes(b"a" * SMALL_LIMIT)  # at the limit: fine
        assert len((await ws.receive()).data) == SMALL_LIMIT
        await ws.send_bytes(b"b" * (SMALL_LIMIT + 1))
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.MESSAGE_TOO_BIG)
        await ws.close()
    await rig.up.last.ended.wait()
    assert rig.up.last.received == 1
    assert rig.up.last.close_code == WSCloseCode.GOING_AWAY


async def test_compressed_message_is_bounded_after_inflating(rig: Rig) -> None:
    """A few hundred bytes of deflate that inflate to 1 MiB are still over the limit."""
    async with rig.connect("/small/ws", compress=15) as ws:
        assert ws.compress == 15
        await ws.send_bytes(bytes(1024 * 1024))
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.MESSAGE_TOO_BIG)
        await ws.close()
    await rig.up.last.ended.wait()
    assert rig.up.last.received == 0


async def test_upstream_message_over_the_limit_is_1009_for_the_client(rig: Rig) -> None:
    async with rig.connect("/small/ws") as ws:
        await ws.send_str(f"big:{SMALL_LIMIT + 1}")
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (
            WSMsgType.CLOSE,
            WSCloseCode.MESSAGE_TOO_BIG,
            "upstream message too big",
        )
        await ws.close()


async def test_idle_session_is_closed_with_1001_on_both_sides(rig: Rig, access: AccessLog) -> None:
    rig.websockets.idle_timeout_seconds = 0.5
    started = time.monotonic()
    async with rig.connect("/free/ws") as ws:
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "idle timeout")
        await ws.close()
    assert time.monotonic() - started >= 0.5
    await rig.up.last.ended.wait()
    assert rig.up.last.close_code == WSCloseCode.GOING_AWAY
    await access.wait_for("free", "websocket_idle_timeout")


async def test_traffic_keeps_a_session_past_the_idle_timeout(rig: Rig) -> None:
    """Messages and pings in either direction count as activity."""
    rig.websockets.idle_timeout_seconds = 0.8
    started = time.monotonic()
    async with rig.connect("/free/ws") as ws:
        for i in range(14):  # about 1.4 s of a client that speaks every 0.1 s
            await asyncio.sleep(0.1)
            if i % 2:
                await ws.ping(b"keepalive")
            else:
                await ws.send_str("still here")
            assert (await ws.receive()).type in (WSMsgType.TEXT, WSMsgType.PONG)
        assert time.monotonic() - started > 1.2
        await ws.close(code=1000)
    assert rig.up.last.close_code == 1000


async def test_slow_reader_stops_the_upstream_instead_of_filling_memory(
    rig: Rig, traced: None
) -> None:
    """The upstream offers 64 MiB to a client that reads nothing: the gateway stops
    reading from the upstream (its sends block) and holds a bounded amount; then
    the client reads everything, intact and in order."""
    tracemalloc.reset_peak()
    async with rig.connect("/free/ws", max_msg_size=0) as ws:
        await ws.send_str(f"flood:{FLOOD_MESSAGES}")
        await rig.up.opened.wait()
        upstream = rig.up.transports[-1]
        # The upstream's socket stops taking data once every buffer on the way is full
        # (a transport state with no event to wait on: checked until the deadline).
        high_water = upstream.get_write_buffer_limits()[1]
        async with asyncio.timeout(30):
            while upstream.get_write_buffer_size() <= high_water:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        stalled_at = rig.up.last.flooded
        _, peak = tracemalloc.get_traced_memory()
        print(f"upstream stalled after {stalled_at / 2**20:.1f} MiB; peak {peak / 2**20:.2f} MiB")
        assert stalled_at < SENT_BOUND
        assert peak < PEAK_LIMIT
        digest, expected = hashlib.sha256(), hashlib.sha256()
        for index in range(FLOOD_MESSAGES):
            msg = await ws.receive()
            assert msg.type is WSMsgType.BINARY
            assert len(msg.data) == CHUNK
            digest.update(msg.data)
            expected.update(pattern_chunk(index))
        assert digest.hexdigest() == expected.hexdigest()
        await ws.close()
    _, peak = tracemalloc.get_traced_memory()
    assert peak < PEAK_LIMIT
