"""HTTP/2 connection-level behaviour: sniffing, deadlines on peers, window accounting, abuse."""

from __future__ import annotations

import asyncio

import hpack
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from gateway.h2engine import H2Limits
from gateway.h2engine.site import PREFACE
from tests.grpc.conftest import GatewayFactory
from tests.grpc.h2client import RawH2Client, grpc_frame, grpc_request
from tests.grpc.rig import TOKEN, WAIT, method

SETTINGS_TIMEOUT, REFUSED_STREAM, ENHANCE_YOUR_CALM = 4, 7, 11


async def read_all(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(WAIT):
        return await reader.read()


def frames(data: bytes) -> list[Frame]:
    out = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        out.append(frame)
        data = data[9 + length :]
    return out


async def test_http1_request_starting_like_the_preface_goes_to_aiohttp(
    make_gateway: GatewayFactory,
) -> None:
    """`POST` shares its first byte with `PRI`: the sniffer decides on the second."""
    gateway = await make_gateway()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"P")
    await writer.drain()
    writer.write(
        b"OST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    reply = await read_all(reader)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 405")
    assert gateway.admission.heads == []


async def test_preface_split_across_reads_is_still_http2(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    for i in range(0, len(PREFACE), 5):
        writer.write(PREFACE[i : i + 5])
        await writer.drain()
    writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # our (empty) SETTINGS
    async with asyncio.timeout(WAIT):
        head = await reader.readexactly(9)
    assert head[3] == 0x4  # the server's SETTINGS frame: HTTP/2 answered
    writer.close()


async def test_unacknowledged_settings_close_the_connection(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(limits=H2Limits(settings_timeout=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # never ACKs ours
    received = frames(await read_all(reader))
    writer.close()
    goaways = [f for f in received if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [SETTINGS_TIMEOUT]


async def test_idle_connection_is_closed_with_goaway(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(limits=H2Limits(idle_connection_timeout=0.3))
    client = await RawH2Client.connect(gateway.port)
    await client.wait_closed()
    assert client.goaway is not None
    assert client.goaway.error_code == 0


async def test_refused_streams_give_their_unread_bodies_window_back(
    make_gateway: GatewayFactory,
) -> None:
    """Bodies the engine never reads (refused requests) must not eat the connection window."""
    gateway = await make_gateway(limits=H2Limits(connection_window=256 * 1024))
    client = await RawH2Client.connect(gateway.port)
    body = grpc_frame(b"x" * 60_000)
    for _ in range(20):  # 20 x 60 kB > the 256 KiB connection window: only works if returned
        async with asyncio.timeout(WAIT):
            while client.conn.outbound_flow_control_window < len(body):
                await client.window_changed()
        sid = client.request(grpc_request(gateway.port, method("Unary")), body, end=False)
        response = await client.response(sid)
        assert response.header(b"grpc-status") == b"13"
    await client.close()
    assert len(gateway.admission.heads) == 20


async def test_rapid_reset_closes_the_connection(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(limits=H2Limits(reset_budget=10))
    client = await RawH2Client.connect(gateway.port)
    for _ in range(11):
        sid = client.request(grpc_request(gateway.port, method("Hang")), end=False)
        client.reset(sid)
    await client.wait_closed()
    assert client.goaway is not None
    assert client.goaway.error_code == ENHANCE_YOUR_CALM


async def test_streams_refused_over_the_limit_count_as_resets(make_gateway: GatewayFactory) -> None:
    """Opening streams past MAX_CONCURRENT_STREAMS gets each refused, and a client that keeps
    doing it is closed like a rapid-reset one."""
    gateway = await make_gateway(limits=H2Limits(max_concurrent_streams=1, reset_budget=5))
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    encoder = hpack.Encoder()
    request = grpc_request(gateway.port, method("Hang"), ("authorization", TOKEN))
    frames_out = [PREFACE, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"]  # SETTINGS
    for stream_id in range(1, 22, 2):  # 11 streams: 1 admitted, 10 over the limit
        block = encoder.encode(request)
        frames_out.append(
            len(block).to_bytes(3, "big") + b"\x01\x04" + stream_id.to_bytes(4, "big")
        )
        frames_out.append(block)
    writer.write(b"".join(frames_out))
    received = frames(await read_all(reader))
    writer.close()
    resets = [f for f in received if isinstance(f, RstStreamFrame)]
    assert {r.error_code for r in resets} >= {REFUSED_STREAM}
    goaways = [f for f in received if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]
