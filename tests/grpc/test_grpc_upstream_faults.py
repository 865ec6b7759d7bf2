"""Upstream faults on cue (a scripted HTTP/2 upstream; the client is real grpcio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.h2engine import FailReason, H2Limits
from tests.grpc.conftest import Gateway, GatewayFactory, Upstream
from tests.grpc.h2client import RawH2Client
from tests.grpc.h2upstream import Script, ScriptedConnection, ScriptedUpstream
from tests.grpc.rig import TOKEN, WAIT, method

PAID = (("authorization", TOKEN),)
CANCEL, REFUSED_STREAM = 8, 7


class ScriptedGateway:
    """Builds gateways in front of scripted upstreams; `servers` are the upstreams, in order."""

    def __init__(self, make_gateway: GatewayFactory, upstream: Upstream) -> None:
        self.make_gateway = make_gateway
        self.upstream = upstream
        self.servers: list[ScriptedUpstream] = []

    async def __call__(self, script: Script, limits: H2Limits | None = None) -> Gateway:
        server = ScriptedUpstream(script)
        self.servers.append(server)
        port = await server.start()
        return await self.make_gateway(target=self.upstream.target(port=port), limits=limits)


@pytest.fixture
async def scripted(
    make_gateway: GatewayFactory, upstream: Upstream
) -> AsyncIterator[ScriptedGateway]:
    builder = ScriptedGateway(make_gateway, upstream)
    yield builder
    for server in builder.servers:
        server.close()


async def call_fails(gateway: Gateway) -> grpc.aio.AioRpcError:
    call = gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_reset_before_the_answer_is_unavailable(scripted: ScriptedGateway) -> None:
    gateway = await scripted(lambda up, sid: up.reset(sid, REFUSED_STREAM))
    error = await call_fails(gateway)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    ticket = gateway.admission.ticket
    outcome = await ticket.wait()
    assert ticket.names == ["failed", "finished"]
    assert ticket.calls[0] == ("failed", FailReason.UPSTREAM_RESET)
    assert outcome.error == "upstream_reset"


async def test_connection_lost_before_the_answer_is_unavailable(scripted: ScriptedGateway) -> None:
    gateway = await scripted(lambda up, sid: up.drop())
    error = await call_fails(gateway)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "upstream connection lost"
    ticket = gateway.admission.ticket
    await ticket.wait()
    assert ticket.calls[0] == ("failed", FailReason.UPSTREAM_CLOSED)


async def test_goaway_refusing_the_stream_is_unavailable(scripted: ScriptedGateway) -> None:
    gateway = await scripted(lambda up, sid: up.goaway(last_stream_id=0))
    error = await call_fails(gateway)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    ticket = gateway.admission.ticket
    await ticket.wait()
    assert ticket.calls[0] == ("failed", FailReason.UPSTREAM_RESET)


async def test_connection_lost_after_the_headers_ends_with_unavailable_trailers(
    scripted: ScriptedGateway,
) -> None:
    def script(up: ScriptedConnection, sid: int) -> None:
        up.answer_headers(sid)
        up.send_message(sid, b"partial")
        up.drop()

    gateway = await scripted(script)
    call = gateway.channel.unary_stream(method("Download"))(b"1", metadata=PAID, timeout=10)
    assert await call.read() == b"partial"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "upstream connection lost"
    ticket = gateway.admission.ticket
    outcome = await ticket.wait()
    assert ticket.names == ["answered", "finished"]  # answered: no failed() after that
    assert (outcome.status, outcome.grpc_status, outcome.error) == (200, 14, "upstream_closed")


async def test_reset_after_the_headers_is_forwarded(scripted: ScriptedGateway) -> None:
    def script(up: ScriptedConnection, sid: int) -> None:
        up.answer_headers(sid)
        up.reset(sid, CANCEL)

    gateway = await scripted(script)
    error = await call_fails(gateway)
    assert error.code() == grpc.StatusCode.CANCELLED  # grpc maps RST_STREAM CANCEL so
    outcome = await gateway.admission.ticket.wait()
    assert outcome.error == "upstream_reset"


async def test_a_new_connection_replaces_one_the_upstream_closed(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """The pool forgets a pooled connection once it closed, and the next call reconnects."""
    gateway = await make_gateway()
    unary = gateway.channel.unary_unary(method("Unary"))
    assert await unary(b"1", metadata=PAID, timeout=10) == b"echo:1"
    [connection] = [c for cs in gateway.proxy.pool._connections.values() for c in cs]
    connection.close()
    assert await unary(b"2", metadata=PAID, timeout=10) == b"echo:2"
    assert gateway.proxy.pool.connection_count == 1
    [again] = [c for cs in gateway.proxy.pool._connections.values() for c in cs]
    assert again is not connection


async def test_idle_upstream_connection_is_closed(scripted: ScriptedGateway) -> None:
    def script(up: ScriptedConnection, sid: int) -> None:
        up.answer_headers(sid)
        up.send_message(sid, b"done")
        up.trailers(sid)

    gateway = await scripted(script, H2Limits(upstream_idle_timeout=0.3))
    unary = gateway.channel.unary_unary(method("Unary"))
    assert await unary(b"x", metadata=PAID, timeout=10) == b"done"
    assert gateway.proxy.pool.connection_count == 1
    async with asyncio.timeout(WAIT):
        await scripted.servers[0].disconnected.wait()
    assert gateway.proxy.pool.connection_count == 0


async def test_bodyless_plain_http2_request_is_forwarded(scripted: ScriptedGateway) -> None:
    def script(up: ScriptedConnection, sid: int) -> None:
        up.conn.send_headers(sid, [(":status", "204"), ("x-up", "1")], end_stream=True)
        up.flush()

    gateway = await scripted(script)
    client = await RawH2Client.connect(gateway.port)
    sid = client.request(
        [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/p?q=1"),
         ("authorization", TOKEN)]
    )  # fmt: skip
    response = await client.response(sid)
    await client.close()
    assert (response.header(b":status"), response.header(b"x-up")) == (b"204", b"1")
    [request] = scripted.servers[0].requests
    assert (b":path", b"/p?q=1") in request
    assert all(name != b"authorization" for name, _ in request)
    outcome = await gateway.admission.ticket.wait()
    assert (outcome.status, outcome.grpc_status, outcome.error) == (204, None, None)
