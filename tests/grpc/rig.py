"""A real grpc.aio upstream (raw-bytes generic handlers), a test Admission and recording Tickets."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc

from gateway.h2engine import FailReason, Forward, H2Target, Refuse, StreamHead, StreamOutcome

SERVICE = "test.Echo"
TOKEN = "L402 paid-credential"
CHALLENGES = (
    ("www-authenticate", 'LSAT macaroon="bWFj", invoice="lnbcrt1"'),
    ("www-authenticate", 'L402 macaroon="bWFj", invoice="lnbcrt1"'),
)
MESSAGE = 1024 * 1024  # streamed message size
WAIT = 30.0  # bound of every wait in these tests (never a synchronisation sleep)


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


def pattern(index: int, size: int = MESSAGE) -> bytes:
    """Deterministic, index-dependent bytes (generated per message, never stored)."""
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (size // 32)


def pattern_digest(count: int, size: int = MESSAGE) -> str:
    digest = hashlib.sha256()
    for index in range(count):
        digest.update(pattern(index, size))
    return digest.hexdigest()


def pattern_messages(count: int, size: int = MESSAGE) -> Iterator[bytes]:
    for index in range(count):
        yield pattern(index, size)


@dataclass
class UpstreamState:
    """What the upstream saw, for assertions."""

    # grpc gives a "-bin" key's value as bytes, any other as str
    metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # never set by tests that hang
    hanging: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_hanging(self, count: int) -> None:
        """Until `count` Hang calls are in the handler at once."""
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(lambda: self.hanging >= count)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str | bytes]:
    return {key: value for key, value in context.invocation_metadata() or ()}


def upstream_handler(state: UpstreamState) -> grpc.GenericRpcHandler:
    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        state.metadata.append(_metadata(context))
        await context.send_initial_metadata((("x-initial", "i-value"),))
        context.set_trailing_metadata((("x-trailer", "t-value"), ("x-trailer-bin", b"\x00\xff")))
        return b"echo:" + request

    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: ü")
        raise AssertionError("abort returns never")

    async def hang(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        state.metadata.append(
            {**_metadata(context), "time-remaining": str(context.time_remaining())}
        )
        state.started.set()
        async with state.changed:
            state.hanging += 1
            state.changed.notify_all()
        try:
            await state.release.wait()
        except asyncio.CancelledError:
            state.cancelled.set()
            raise
        return b"released"

    async def download(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        count, _, size = request.partition(b":")
        for index in range(int(count)):
            yield pattern(index, int(size) if size else MESSAGE)

    async def upload(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        pace = float(_metadata(context).get("x-pace", "0"))  # a slow consumer, seconds/message
        digest = hashlib.sha256()
        total = 0
        async for message in requests:
            digest.update(message)
            total += len(message)
            if pace:
                await asyncio.sleep(pace)
        return f"{total}:{digest.hexdigest()}".encode()

    async def bidi(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield b"re:" + message

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Hang": grpc.unary_unary_rpc_method_handler(hang),
        "Download": grpc.unary_stream_rpc_method_handler(download),
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def start_upstream(
    state: UpstreamState, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((upstream_handler(state),))
    address = "127.0.0.1:0"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    await server.start()
    return server, port


class RecordingTicket:
    """Records the engine's Ticket calls in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.outcome: StreamOutcome | None = None
        self.done = asyncio.Event()

    async def answered(self, status: int, grpc_status: int | None) -> None:
        self.calls.append(("answered", (status, grpc_status)))

    async def failed(self, reason: FailReason) -> None:
        self.calls.append(("failed", reason))

    def finished(self, outcome: StreamOutcome) -> None:
        self.calls.append(("finished", outcome))
        self.outcome = outcome
        self.done.set()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def wait(self) -> StreamOutcome:
        async with asyncio.timeout(WAIT):
            await self.done.wait()
        assert self.outcome is not None
        return self.outcome


class TestAdmission:
    """Forwards when `authorization` is exactly TOKEN; otherwise Aperture's gRPC refusal."""

    __test__ = False  # not a pytest class

    def __init__(self, target: H2Target) -> None:
        self.target = target
        self.heads: list[StreamHead] = []
        self.tickets: list[RecordingTicket] = []

    async def decide(self, head: StreamHead) -> Refuse | Forward:
        self.heads.append(head)
        if head.values("authorization") != [TOKEN]:
            return Refuse(
                status=402,
                headers=CHALLENGES,
                body=b"payment required\n",
                grpc_status=13,
                grpc_message="payment required",
            )
        ticket = RecordingTicket()
        self.tickets.append(ticket)
        headers = tuple((k, v) for k, v in head.headers if k != "authorization")
        return Forward(target=self.target, path=head.path, headers=headers, ticket=ticket)

    @property
    def ticket(self) -> RecordingTicket:
        [ticket] = self.tickets
        return ticket
