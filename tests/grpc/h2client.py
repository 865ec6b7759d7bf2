"""A minimal HTTP/2 client for tests that need frames grpcio will not send
(a grpc-timeout without a client-side deadline, oversized headers, plain HTTP/2)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from tests.grpc.rig import WAIT


@dataclass
class Response:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reset_code: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers + self.trailers if k == name), None)

    def all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers + self.trailers if k == name]


class RawH2Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.responses: dict[int, Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = asyncio.Event()
        self._window = asyncio.Event()
        self._pong = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int) -> RawH2Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        client.conn.initiate_connection()
        client._flush()
        client._task = asyncio.get_running_loop().create_task(client._read())
        return client

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for event in self.conn.receive_data(data):
                    self._on(event)
                self._flush()
        finally:
            self.closed.set()
            for response in self.responses.values():
                response.ended.set()

    def _on(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", 0)
        response = self.responses.get(sid)
        if isinstance(event, h2.events.ResponseReceived) and response:
            response.headers = list(event.headers or ())
        elif isinstance(event, h2.events.DataReceived) and response:
            response.data += event.data or b""
            self.conn.acknowledge_received_data(event.flow_controlled_length or 0, sid)
        elif isinstance(event, h2.events.TrailersReceived) and response:
            response.trailers = list(event.headers or ())
        elif isinstance(event, h2.events.StreamEnded) and response:
            response.ended.set()
        elif isinstance(event, h2.events.StreamReset) and response:
            response.reset_code = int(event.error_code or 0)
            response.ended.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.WindowUpdated):
            self._window.set()
        elif isinstance(event, h2.events.PingAckReceived):
            self._pong.set()

    def request(
        self, headers: list[tuple[str, str]], body: bytes | None = None, *, end: bool = True
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = Response()
        self.conn.send_headers(sid, headers, end_stream=body is None and end)
        if body is not None:
            size = self.conn.max_outbound_frame_size
            pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
            for index, piece in enumerate(pieces):
                self.conn.send_data(sid, piece, end_stream=end and index == len(pieces) - 1)
        self._flush()
        return sid

    def reset(self, sid: int, code: int = 8) -> None:
        self.conn.reset_stream(sid, code)
        self._flush()

    async def ping(self) -> None:
        """Round trip: every frame sent before it has been processed by the peer."""
        self._pong.clear()
        self.conn.ping(b"roundtrp")
        self._flush()
        async with asyncio.timeout(WAIT):
            await self._pong.wait()

    async def window_changed(self) -> None:
        self._window.clear()
        await self._window.wait()

    async def response(self, sid: int) -> Response:
        response = self.responses[sid]
        async with asyncio.timeout(WAIT):
            await response.ended.wait()
        return response

    async def wait_closed(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.closed.wait()

    async def close(self) -> None:
        self.writer.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=WAIT)


def grpc_request(port: int, path: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
        (":path", path),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message
