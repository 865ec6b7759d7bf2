"""A scripted HTTP/2 upstream (h2 library, server side) for upstream faults grpcio never makes
on cue: RST_STREAM or a dropped connection before or after the response headers, GOAWAY."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events

from tests.grpc.h2client import grpc_frame

Script = Callable[["ScriptedConnection", int], None]


class ScriptedConnection(asyncio.Protocol):
    def __init__(
        self,
        script: Script,
        requests: list[list[tuple[bytes, bytes]]],
        disconnected: asyncio.Event,
    ) -> None:
        self.script = script
        self.requests = requests
        self.disconnected = disconnected
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disconnected.set()

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.requests.append(list(event.headers or ()))
                self.script(self, event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                size = event.flow_controlled_length or 0
                if size and event.stream_id in self.conn.streams:
                    self.conn.acknowledge_received_data(size, event.stream_id)
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    # script steps
    def answer_headers(self, sid: int) -> None:
        self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        self.flush()

    def send_message(self, sid: int, message: bytes) -> None:
        self.conn.send_data(sid, grpc_frame(message))
        self.flush()

    def trailers(self, sid: int, status: int = 0) -> None:
        self.conn.send_headers(sid, [("grpc-status", str(status))], end_stream=True)
        self.flush()

    def reset(self, sid: int, code: int) -> None:
        self.conn.reset_stream(sid, code)
        self.flush()

    def goaway(self, last_stream_id: int) -> None:
        self.conn.close_connection(last_stream_id=last_stream_id)
        self.flush()

    def drop(self) -> None:
        self.flush()
        assert self.transport is not None
        self.transport.close()


class ScriptedUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[list[tuple[bytes, bytes]]] = []
        self.disconnected = asyncio.Event()  # some connection to it closed
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ScriptedConnection(self.script, self.requests, self.disconnected),
            "127.0.0.1",
            0,
        )
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
