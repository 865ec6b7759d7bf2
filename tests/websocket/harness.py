"""A real gateway in front of real WebSocket upstreams, all on 127.0.0.1.

The gateway is the real `GatewayServer` (edge listener, middlewares,
handler, leases, WebSocket forwarder) on a real in-memory SQLite store. Two
independent upstream implementations: an aiohttp WebSocket app and a server
from the `websockets` package. Only LND's invoice role is the named fake
`MemoryInvoiceSource`; test_websocket_regtest.py pays real invoices on LND.

The aiohttp upstream echoes text and binary messages and obeys a few text
commands, so a test can make the far end act: `close:<code>:<reason>`,
`ping:<payload>`, `big:<bytes>`, `flood:<count>` (64 KiB messages as fast as
the connection takes them), `drop` (lose the connection without a close).
It answers pings itself (autoping off) and records them, so a pong proves the
ping crossed the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import websockets
import yaml
from aiohttp import WSMsgType, web
from websockets.asyncio.server import ServerConnection

from gateway.config import load_config
from gateway.lightning.backend import Backend
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.keys import HANDLER_KEY
from gateway.server.serve import GatewayServer
from gateway.server.upgrade import WebSocketForwarder
from gateway.store import open_store
from gateway.store.roles import Store
from tests.support.bodies import CHUNK, pattern_chunk
from tests.support.clock import FakeClock
from tests.support.documents import in_process_document
from tests.support.invoices import MemoryInvoiceSource

UPSTREAM_PROTOCOLS = ("chat.v2", "chat.v1")
SMALL_LIMIT = 1024


@dataclass
class UpSession:
    """One session as the upstream saw it."""

    path: str
    headers: list[tuple[str, str]]
    protocol: str | None
    pings: list[bytes] = field(default_factory=list)
    received: int = 0
    flooded: int = 0  # bytes of `flood` the upstream managed to hand to its socket
    close_code: int | None = None
    close_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class UpState:
    sessions: list[UpSession] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    refuse_status: int | None = None  # answer the handshake with this status instead
    hang: bool = False  # never answer the handshake
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    never: asyncio.Event = field(default_factory=asyncio.Event)
    transports: list[asyncio.Transport] = field(default_factory=list)

    @property
    def last(self) -> UpSession:
        return self.sessions[-1]


UP_STATE = web.AppKey("ws_upstream_state", UpState)


async def _command(ws: web.WebSocketResponse, session: UpSession, text: str) -> bool:
    """Run one text command; False when the session is over."""
    verb, _, rest = text.partition(":")
    if verb == "close":
        code, _, reason = rest.partition(":")
        await ws.close(code=int(code), message=reason.encode())
        session.close_code = ws.close_code
        return False
    if verb == "ping":
        await ws.ping(rest.encode())
    elif verb == "big":
        await ws.send_bytes(b"x" * int(rest))
    elif verb == "flood":
        for index in range(int(rest)):
            await ws.send_bytes(pattern_chunk(index))
            session.flooded += CHUNK
    else:
        await ws.send_str(text)
    return True


async def _ws_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[UP_STATE]
    if state.refuse_status is not None:
        return web.Response(status=state.refuse_status, text="no WebSocket for you")
    if state.hang:
        state.hanging.set()
        await state.never.wait()
    ws = web.WebSocketResponse(
        protocols=UPSTREAM_PROTOCOLS, autoping=False, autoclose=False, max_msg_size=0
    )
    await ws.prepare(request)
    assert request.transport is not None
    state.transports.append(request.transport)
    session = UpSession(request.path, list(request.headers.items()), ws.ws_protocol)
    state.sessions.append(session)
    state.opened.set()
    try:
        while True:
            msg = await ws.receive()
            session.received += msg.type in (WSMsgType.TEXT, WSMsgType.BINARY)
            if msg.type is WSMsgType.TEXT:
                if msg.data == "drop":
                    request.transport.abort()
                    break
                if not await _command(ws, session, msg.data):
                    break
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                session.pings.append(msg.data)
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                session.close_code, session.close_reason = msg.data, msg.extra
                await ws.close(code=msg.data)  # echo the code, as RFC 6455 suggests
                break
            elif msg.type is not WSMsgType.PONG:  # CLOSED / ERROR: the gateway vanished
                session.close_code = ws.close_code
                break
    finally:
        session.ended.set()
    return ws


def upstream_app() -> web.Application:
    app = web.Application()
    app[UP_STATE] = UpState()
    app.router.add_get("/{tail:.*}", _ws_handler)
    return app


@dataclass
class LibState:
    """What the `websockets` upstream saw."""

    close_codes: list[int | None] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


async def _lib_handler(state: LibState, ws: ServerConnection) -> None:
    """Echo; `fragments` answers with one message sent as three frames."""
    try:
        async for message in ws:
            if message == "fragments":
                await ws.send(["one ", "two ", "three"])
            else:
                await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    state.close_codes.append(ws.close_code)
    state.ended.set()


def document(aio: str, lib: str, later: str, **top: Any) -> dict[str, Any]:
    def route(name: str, upstream: str = aio, **extra: Any) -> dict[str, Any]:
        return {"name": name, "path": f"^/{name}/", "upstream": upstream} | extra

    routes = [
        route("free", price_sats=0),
        route("paid", price_sats=10),
        route("once", price_sats=21, token_mode="per-request"),
        route("noauth", price_sats=5, forward_authorization=False,
              upstream_headers={"Authorization": "Bearer upstream-key"}),
        route("small", price_sats=0, max_body_bytes=SMALL_LIMIT),
        route("lib", lib, price_sats=0),
        route("libonce", lib, price_sats=3, token_mode="per-request"),
        route("later", later, price_sats=2, token_mode="per-request"),
        route("slow", price_sats=4, token_mode="per-request", upstream_timeout_seconds=1),
    ]  # fmt: skip
    return in_process_document(routes, **top)


@dataclass
class Bought:
    macaroon: str
    preimage: str

    @property
    def authorization(self) -> str:
        return f"L402 {self.macaroon}:{self.preimage}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": self.authorization}


@dataclass
class Rig:
    server: GatewayServer
    invoices: MemoryInvoiceSource
    store: Store
    up: UpState
    lib: LibState
    later_port: int
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.public_port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def websockets(self) -> WebSocketForwarder:
        return self.server.app[HANDLER_KEY].forwarder.websockets

    async def buy(self, path: str) -> Bought:
        """A challenge (plain GET), 'paid' by looking up the fake invoice's preimage."""
        async with self.session.get(self.url(path)) as r:
            assert r.status == 402, (r.status, await r.text())
            body = await r.json()
        preimage = self.invoices.preimage_for(bytes.fromhex(body["payment_hash"]))
        assert hashlib.sha256(preimage).hexdigest() == body["payment_hash"]
        return Bought(body["macaroon"], preimage.hex())

    def connect(self, path: str, **kw: Any) -> Any:
        """aiohttp's ws_connect to the gateway; relays pings and closes like the gateway."""
        kw.setdefault("autoping", False)
        kw.setdefault("autoclose", False)
        kw.setdefault("timeout", aiohttp.ClientWSTimeout(ws_receive=10, ws_close=5))
        return self.session.ws_connect(self.url(path), **kw)

    async def metric(self, name: str, **labels: str) -> float:
        from tests.gateway.harness import metric

        async with self.session.get(f"http://127.0.0.1:{self.server.admin_port}/metrics") as r:
            return metric(await r.text(), name, **labels)


async def _serve(app: web.Application, stack: AsyncExitStack, port: int = 0) -> int:
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return int(runner.addresses[0][1])


async def serve_upstream_on(port: int, stack: AsyncExitStack) -> UpState:
    """Start another aiohttp upstream on `port` (the `later` route's address)."""
    app = upstream_app()
    await _serve(app, stack, port)
    return app[UP_STATE]


@asynccontextmanager
async def running_rig(
    tmp_path: Path, regtest: Descriptor | None = None, **top: Any
) -> AsyncIterator[Rig]:
    """The rig; with `regtest`, the gateway sells on the real seller LND instead of the fake."""
    async with AsyncExitStack() as stack:
        app = upstream_app()
        aio_port = await _serve(app, stack)
        lib = LibState()
        lib_server = await websockets.serve(
            lambda ws: _lib_handler(lib, ws), "127.0.0.1", 0, max_size=None
        )
        stack.push_async_callback(lib_server.wait_closed)
        stack.callback(lib_server.close)
        lib_port = next(iter(lib_server.sockets)).getsockname()[1]
        later_port = free_port()
        path = tmp_path / "routes.yaml"
        doc = document(
            f"http://127.0.0.1:{aio_port}",
            f"http://127.0.0.1:{lib_port}",
            f"http://127.0.0.1:{later_port}",
            **top,
        )
        if regtest is not None:
            seller = regtest.seller
            doc["lnd"] = {
                "host": seller.rpc,
                "tls_cert": seller.tls_cert,
                "macaroon": seller.invoice_macaroon,
            }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        invoices = MemoryInvoiceSource()
        store = await open_store("sqlite::memory:")
        stack.push_async_callback(store.close)
        server = GatewayServer(
            load_config(path, check_files=regtest is not None),
            store=store,
            backend=None if regtest is not None else cast(Backend, invoices),
            clock=FakeClock(),
            shutdown_timeout=2.0,
            follow_settlements=regtest is not None,
        )
        await server.start()
        stack.push_async_callback(server.stop)
        stack.callback(app[UP_STATE].never.set)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        stack.push_async_callback(session.close)
        yield Rig(server, invoices, store, app[UP_STATE], lib, later_port, session)


class AccessLog(logging.Handler):
    """The gateway's access-log records, with a wait that wakes on each new one (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def outcomes(self, route: str) -> list[str]:
        return [
            str(r.__dict__.get("outcome")) for r in self.records if r.__dict__.get("route") == route
        ]

    async def wait_for(self, route: str, outcome: str, timeout: float = 10.0) -> logging.LogRecord:
        async with asyncio.timeout(timeout):
            while True:
                for record in self.records:
                    fields = record.__dict__
                    if fields.get("route") == route and fields.get("outcome") == outcome:
                        return record
                self._changed.clear()
                await self._changed.wait()
