"""The engine's own HTTP/2 wire (gateway.h2engine.wire), sans I/O, against the h2 library as
the peer (an independent implementation), and raw frames for what h2 will not send."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import pytest

from gateway.h2engine import frames as f
from gateway.h2engine.frames import ErrorCode, FrameType, Setting
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.hpackout import BlockEncoder, field
from gateway.h2engine.wire import H2Wire, NoStreamAvailable, ProtocolError, StreamClosed

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/svc/M"),
           (b":authority", b"gw"), (b"content-type", b"application/grpc"),
           (b"te", b"trailers")]  # fmt: skip


class Recorder:
    """A WireHandler that keeps every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        self.calls.append(("headers", stream_id, list(headers), end_stream))

    def on_trailers(self, stream_id: int, headers: RawHeaders) -> None:
        self.calls.append(("trailers", stream_id, list(headers)))

    def on_data(self, stream_id: int, data: memoryview, flow: int, end_stream: bool) -> None:
        self.calls.append(("data", stream_id, bytes(data), flow, end_stream))

    def on_reset(self, stream_id: int, code: int) -> None:
        self.calls.append(("reset", stream_id, code))

    def on_window(self, stream_id: int) -> None:
        self.calls.append(("window", stream_id))

    def on_settings(self) -> None:
        self.calls.append(("settings",))

    def on_settings_ack(self) -> None:
        self.calls.append(("settings_ack",))

    def on_goaway(self, code: int, last_stream_id: int) -> None:
        self.calls.append(("goaway", code, last_stream_id))

    def on_refused(self, stream_id: int) -> None:
        self.calls.append(("refused", stream_id))

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls if c[0] not in ("window", "settings", "settings_ack")]


def server_pair(**settings: int) -> tuple[H2Wire, Recorder, h2.connection.H2Connection]:
    recorder = Recorder()
    wire = H2Wire(recorder, client_side=False, settings={Setting.MAX_CONCURRENT_STREAMS: 2,
                  **{Setting[k]: v for k, v in settings.items()}},
                  max_header_list_size=8192)  # fmt: skip
    wire.initiate()
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    peer.initiate_connection()
    exchange(wire, peer)
    return wire, recorder, peer


def exchange(wire: H2Wire, peer: h2.connection.H2Connection) -> list[h2.events.Event]:
    """Move bytes both ways until both sides are quiet; the peer's events."""
    events: list[h2.events.Event] = []
    for _ in range(10):
        to_wire, to_peer = peer.data_to_send(), bytes(wire.data_to_send())
        if not to_wire and not to_peer:
            break
        if to_wire:
            wire.receive(to_wire)
        if to_peer:
            events += peer.receive_data(to_peer)
    return events


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return f.frame_header(len(payload), kind, flags, stream_id) + payload


def test_a_grpc_call_as_the_server_side() -> None:
    wire, rec, peer = server_pair()
    peer.send_headers(1, REQUEST)
    peer.send_data(1, b"\x00\x00\x00\x00\x02hi", end_stream=True)
    exchange(wire, peer)
    assert rec.kinds() == ["headers", "data"]
    assert rec.calls[-1][2:] == (b"\x00\x00\x00\x00\x02hi", 7, True)
    headers = next(c for c in rec.calls if c[0] == "headers")
    assert (headers[2], headers[3]) == (REQUEST, False)
    wire.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")],
                      end_stream=False)  # fmt: skip
    wire.send_data(1, b"\x00\x00\x00\x00\x02ok", end_stream=False)
    wire.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    events = exchange(wire, peer)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ResponseReceived", "DataReceived", "TrailersReceived", "StreamEnded"]
    assert 1 not in wire.streams  # closed both ways: forgotten
    with pytest.raises(StreamClosed):
        wire.send_data(1, b"late", end_stream=True)


def test_a_call_as_the_client_side_skips_informational_answers() -> None:
    recorder = Recorder()
    wire = H2Wire(recorder, client_side=True, settings={Setting.ENABLE_PUSH: 0},
                  max_header_list_size=8192)  # fmt: skip
    wire.initiate()
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    peer.initiate_connection()
    events = exchange(wire, peer)
    stream_id = wire.open_stream(REQUEST, end_stream=True)
    events = exchange(wire, peer)
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    assert request.stream_id == stream_id == 1
    assert list(request.headers or []) == REQUEST
    peer.send_headers(1, [(b":status", b"100")])
    peer.send_headers(1, [(b":status", b"200")])
    peer.send_data(1, b"x" * 10)
    peer.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    exchange(wire, peer)
    assert recorder.kinds() == ["headers", "data", "trailers"]
    assert recorder.calls[-1] == ("trailers", 1, [(b"grpc-status", b"0")])
    assert wire.open_stream(REQUEST, end_stream=True) == 3


def test_flow_control_both_ways() -> None:
    wire, rec, peer = server_pair()
    peer.send_headers(1, REQUEST)
    exchange(wire, peer)
    assert wire.window(1) == f.DEFAULT_WINDOW
    with pytest.raises(ProtocolError) as caught:
        wire.send_data(1, b"x" * (f.DEFAULT_WINDOW + 1), end_stream=False)
    assert caught.value.code == ErrorCode.FLOW_CONTROL_ERROR
    wire.send_headers(1, [(b":status", b"200")], end_stream=False)
    wire.send_data(1, b"x" * f.DEFAULT_WINDOW, end_stream=False)
    assert wire.window(1) == 0
    exchange(wire, peer)
    peer.increment_flow_control_window(1000, stream_id=1)
    peer.increment_flow_control_window(500)
    exchange(wire, peer)
    assert [c for c in rec.calls if c[0] == "window"][-2:] == [("window", 1), ("window", 0)]
    assert wire.window(1) == 500  # the connection's window is the smaller
    # Receiving: WINDOW_UPDATE only once half a window was handed on.
    peer.send_data(1, b"y" * 15_000)
    peer.send_data(1, b"y" * 15_000)
    exchange(wire, peer)
    wire.acknowledge(1, 30_000)
    assert bytes(wire.data_to_send()) == b""
    peer.send_data(1, b"y" * 3_000)
    exchange(wire, peer)
    wire.acknowledge(1, 3_000)
    assert bytes(wire.data_to_send()) == f.window_update(0, 33_000) + f.window_update(1, 33_000)


def test_new_initial_window_applies_to_open_streams() -> None:
    wire, _, peer = server_pair()
    peer.send_headers(1, REQUEST)
    exchange(wire, peer)
    peer.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100_000})
    exchange(wire, peer)
    assert wire.streams[1].send == 100_000


def test_streams_over_the_limit_are_refused_not_the_connection() -> None:
    wire, rec, _ = server_pair()
    encoder = hpack.Encoder()
    for stream_id in (1, 3, 5):  # h2 as a client would not send the third
        wire.receive(raw(FrameType.HEADERS, f.END_HEADERS, stream_id, encoder.encode(REQUEST)))
    assert bytes(wire.data_to_send()) == f.rst_stream(5, ErrorCode.REFUSED_STREAM)
    assert [c[1] for c in rec.calls if c[0] == "headers"] == [1, 3]
    assert rec.calls[-1] == ("refused", 5)


@pytest.mark.parametrize(
    "extra",
    [[(b"Upper", b"x")], [(b"connection", b"close")], [(b"te", b"gzip")], [(b"x", b" padded")],
     [(b"x", b"a\x00b")], [(b":status", b"200")]],
)  # fmt: skip
def test_malformed_requests_are_reset_and_never_seen(extra: RawHeaders) -> None:
    wire, rec, _ = server_pair()
    block = hpack.Encoder().encode(REQUEST + extra)
    wire.receive(raw(FrameType.HEADERS, f.END_HEADERS | f.END_STREAM, 1, block))
    assert bytes(wire.data_to_send()) == f.rst_stream(1, ErrorCode.PROTOCOL_ERROR)
    assert rec.kinds() == ["refused"]


def test_header_block_split_over_continuation() -> None:
    wire, rec, _ = server_pair()
    block = hpack.Encoder().encode(REQUEST)
    wire.receive(raw(FrameType.HEADERS, f.END_STREAM, 1, block[:5]) +
                 raw(FrameType.CONTINUATION, 0, 1, block[5:9]))  # fmt: skip
    assert rec.kinds() == []
    wire.receive(raw(FrameType.CONTINUATION, f.END_HEADERS, 1, block[9:]))
    assert rec.calls[-1] == ("headers", 1, REQUEST, True)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (raw(FrameType.DATA, 0, 0, b"x"), ErrorCode.PROTOCOL_ERROR),
        (raw(FrameType.DATA, 0, 7, b"x"), ErrorCode.PROTOCOL_ERROR),  # idle stream
        (raw(FrameType.HEADERS, 0, 1, b"\x82") + raw(FrameType.DATA, 0, 1),
         ErrorCode.PROTOCOL_ERROR),  # a header block interrupted
        (raw(FrameType.CONTINUATION, f.END_HEADERS, 1, b""), ErrorCode.PROTOCOL_ERROR),
        (raw(FrameType.WINDOW_UPDATE, 0, 0, f.U32.pack(0)), ErrorCode.PROTOCOL_ERROR),
        (raw(FrameType.WINDOW_UPDATE, 0, 0, f.U32.pack(2**31 - 1)), ErrorCode.FLOW_CONTROL_ERROR),
        (raw(FrameType.PING, 0, 0, b"1234"), ErrorCode.PROTOCOL_ERROR),
        (raw(FrameType.SETTINGS, 0, 0, b"\x00\x04\xff\xff\xff\xff"), ErrorCode.FLOW_CONTROL_ERROR),
        (raw(FrameType.PUSH_PROMISE, f.END_HEADERS, 1, b"\x00\x00\x00\x02"),
         ErrorCode.PROTOCOL_ERROR),
        (raw(FrameType.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff"), ErrorCode.COMPRESSION_ERROR),
        (f.frame_header(300_000, FrameType.DATA, 0, 1), ErrorCode.FRAME_SIZE_ERROR),
    ],
)  # fmt: skip
def test_connection_errors(frame: bytes, code: ErrorCode) -> None:
    wire, _, _ = server_pair()
    with pytest.raises(ProtocolError) as caught:
        wire.receive(frame)
    assert caught.value.code == code


def test_a_flood_of_empty_continuation_frames_is_cut() -> None:
    wire, _, _ = server_pair()
    block = hpack.Encoder().encode(REQUEST)
    wire.receive(raw(FrameType.HEADERS, 0, 1, block))
    with pytest.raises(ProtocolError) as caught:  # 100 empty frames in one read
        wire.receive(raw(FrameType.CONTINUATION, 0, 1) * 100)
    assert caught.value.code == ErrorCode.ENHANCE_YOUR_CALM


def test_the_preface_and_a_first_settings_frame_are_required() -> None:
    wire = H2Wire(Recorder(), client_side=False, settings={}, max_header_list_size=8192)
    wire.receive(f.PREFACE[:10])  # partial: waits
    with pytest.raises(ProtocolError):
        wire.receive(b"GET / HTTP/1.1\r\n\r\n")
    wire = H2Wire(Recorder(), client_side=False, settings={}, max_header_list_size=8192)
    with pytest.raises(ProtocolError):
        wire.receive(f.PREFACE + raw(FrameType.PING, 0, 0, b"12345678"))


def test_late_frames_on_a_reset_stream_return_their_window() -> None:
    wire, rec, peer = server_pair()
    peer.send_headers(1, REQUEST)
    exchange(wire, peer)
    wire.reset(1, ErrorCode.CANCEL)
    wire.data_to_send()
    for _ in range(3):  # 3 x 16 KiB: past half of the 64 KiB connection window
        wire.receive(raw(FrameType.DATA, 0, 1, b"z" * 16_384))
    assert wire.recv_window > f.DEFAULT_WINDOW - 3 * 16_384
    assert rec.kinds() == ["headers"]
    assert bytes(wire.data_to_send()).startswith(f.frame_header(4, FrameType.WINDOW_UPDATE, 0, 0))


def test_ping_goaway_and_reset_from_the_peer() -> None:
    wire, rec, peer = server_pair()
    peer.send_headers(1, REQUEST)
    peer.ping(b"abcdefgh")
    events = exchange(wire, peer)
    assert any(isinstance(e, h2.events.PingAckReceived) for e in events)
    peer.reset_stream(1, ErrorCode.CANCEL)
    exchange(wire, peer)
    assert rec.calls[-1] == ("reset", 1, ErrorCode.CANCEL)
    peer.close_connection(ErrorCode.NO_ERROR, last_stream_id=0)
    exchange(wire, peer)
    assert rec.calls[-1] == ("goaway", 0, 0)


def test_client_side_stream_limit_follows_the_peer() -> None:
    recorder = Recorder()
    wire = H2Wire(recorder, client_side=True, settings={}, max_header_list_size=8192)
    wire.initiate()
    wire.receive(raw(FrameType.SETTINGS, 0, 0, f.SETTING.pack(Setting.MAX_CONCURRENT_STREAMS, 1)))
    wire.open_stream(REQUEST, end_stream=False)
    with pytest.raises(NoStreamAvailable):
        wire.open_stream(REQUEST, end_stream=False)


def test_blocks_decode_with_any_hpack_decoder() -> None:
    encoder = BlockEncoder()
    long_value = b"v" * 300  # multi-byte length prefix
    headers = [*REQUEST, (b"x-custom", long_value), (b"user-agent", b"grpc-python"),
               hpack.NeverIndexedHeaderTuple(b"authorization", b"L402 mac:pre")]  # fmt: skip
    decoder = hpack.Decoder()
    first = encoder.encode(headers)
    assert first[:1] == b"\x20"  # dynamic table size 0, announced once
    assert decoder.decode(first, raw=True) == headers
    decoded = decoder.decode(encoder.encode(headers), raw=True)
    assert decoded == headers
    assert isinstance(decoded[-1], hpack.NeverIndexedHeaderTuple)
    assert len(decoder.header_table.dynamic_entries) == 0  # nothing was ever indexed
    assert field(b":method", b"POST") == b"\x83"  # static table entry 3
    encoder.table_size_changed()
    assert encoder.encode([(b":method", b"POST")]) == b"\x20\x83"
