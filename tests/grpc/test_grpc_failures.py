"""Deadlines, cancellation and upstream failures, end to end with real grpcio on both sides."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from gateway.h2engine import FailReason, Forward, H2Limits, H2Target, Refuse, StreamHead
from tests.grpc.conftest import GatewayFactory, Upstream
from tests.grpc.h2client import RawH2Client, grpc_frame, grpc_request
from tests.grpc.rig import TOKEN, WAIT, TestAdmission, method

PAID = (("authorization", TOKEN),)


async def wait_for(event: asyncio.Event) -> None:
    async with asyncio.timeout(WAIT):
        await event.wait()


async def test_client_deadline_cancels_the_upstream(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway()
    call = gateway.channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for(upstream.state.cancelled)
    remaining = float(upstream.state.metadata[0]["time-remaining"])
    # grpc-timeout reached the upstream, minus time spent. The bound is the client's own
    # header, not 1.0: grpc core encodes timeouts between 1 s and 10 s in 10 ms units,
    # rounded up, so `timeout=1.0` goes out as up to "101" tens of milliseconds.
    assert 0 < remaining <= 1.010
    outcome = await gateway.admission.ticket.wait()
    assert "answered" not in gateway.admission.ticket.names
    assert outcome.status is None
    # whichever came first: the client's own RST_STREAM or the engine's deadline
    assert outcome.cancelled_by_client or outcome.error == FailReason.DEADLINE


async def test_engine_enforces_grpc_timeout_itself(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A client that sends grpc-timeout but never cancels gets DEADLINE_EXCEEDED from the engine."""
    gateway = await make_gateway()
    client = await RawH2Client.connect(gateway.port)
    headers = grpc_request(
        gateway.port, method("Hang"), ("authorization", TOKEN), ("grpc-timeout", "300m")
    )
    sid = client.request(headers, grpc_frame(b"x"))
    response = await client.response(sid)
    await client.close()
    assert response.header(b":status") == b"200"
    assert response.header(b"grpc-status") == b"4"
    assert response.header(b"grpc-message") == b"deadline exceeded"
    await wait_for(upstream.state.cancelled)
    ticket = gateway.admission.ticket
    outcome = await ticket.wait()
    assert ticket.names == ["failed", "finished"]
    assert ticket.calls[0] == ("failed", FailReason.DEADLINE)
    assert (outcome.error, outcome.grpc_status, outcome.cancelled_by_client) == (
        "deadline_exceeded",
        4,
        False,
    )


async def test_malformed_grpc_timeout_is_refused_before_admission(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    client = await RawH2Client.connect(gateway.port)
    headers = grpc_request(gateway.port, method("Unary"), ("grpc-timeout", "1.5S"))
    response = await client.response(client.request(headers, grpc_frame(b"x")))
    await client.close()
    assert response.header(b"grpc-status") == b"13"
    assert response.header(b"grpc-message") == b"malformed grpc-timeout"
    assert gateway.admission.heads == []


async def test_client_cancel_cancels_the_upstream(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway()
    call = gateway.channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=WAIT)
    await wait_for(upstream.state.started)
    call.cancel()
    await wait_for(upstream.state.cancelled)
    outcome = await gateway.admission.ticket.wait()
    assert gateway.admission.ticket.names == ["finished"]  # neither answered nor failed
    assert outcome.cancelled_by_client
    assert outcome.error == "client_reset"


async def test_upstream_down_gives_unavailable_and_failed(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    gateway = await make_gateway(target=upstream.target(port=closed_port))
    call = gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "upstream unavailable"
    ticket = gateway.admission.ticket
    outcome = await ticket.wait()
    assert ticket.names == ["failed", "finished"]
    assert ticket.calls[0] == ("failed", FailReason.CONNECT_FAILED)
    assert (outcome.status, outcome.grpc_status, outcome.error) == (None, 14, "connect_failed")


async def test_upstream_that_is_not_http2_fails_before_sending(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """An HTTP/1.1 server as target: no SETTINGS, so the request never leaves the gateway."""
    seen: list[bytes] = []

    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(http1, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gateway = await make_gateway(target=upstream.target(port=port))
        call = gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        ticket = gateway.admission.ticket
        await ticket.wait()
        assert ticket.calls[0] == ("failed", FailReason.NOT_HTTP2)
        assert b"echo" not in b"".join(seen)
        assert all(b"/test.Echo/Unary" not in chunk for chunk in seen)  # HPACK: no path bytes
    finally:
        server.close()


async def test_upstream_stopping_mid_call_passes_its_status_through(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway()
    call = gateway.channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=WAIT)
    await wait_for(upstream.state.started)
    await upstream.server.stop(None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    ticket = gateway.admission.ticket
    outcome = await ticket.wait()
    # grpc-core answers its cancelled calls with UNAVAILABLE itself: the upstream answered
    assert ticket.calls[0] == ("answered", (200, 14))
    assert (outcome.grpc_status, outcome.error) == (14, None)


async def test_connect_deadline_when_upstream_never_answers(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A listener that accepts and stays silent: connect_timeout bounds the wait."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gateway = await make_gateway(target=upstream.target(port=port, connect_timeout=0.5))
        call = gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=WAIT)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        ticket = gateway.admission.ticket
        await ticket.wait()
        assert ticket.calls[0] == ("failed", FailReason.CONNECT_TIMEOUT)
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_idle_stream_timeout_ends_a_silent_upstream(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway(limits=H2Limits(idle_stream_timeout=0.5))
    call = gateway.channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=WAIT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "upstream idle timeout"
    await wait_for(upstream.state.cancelled)
    ticket = gateway.admission.ticket
    await ticket.wait()
    assert ticket.calls[0] == ("failed", FailReason.UPSTREAM_IDLE)


class GatedAdmission(TestAdmission):
    """decide() waits for the test to open the gate."""

    def __init__(self, target: H2Target) -> None:
        super().__init__(target)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.decided = asyncio.Event()

    async def decide(self, head: StreamHead) -> Refuse | Forward:
        self.entered.set()
        await self.gate.wait()
        decision = await super().decide(head)
        self.decided.set()
        return decision


async def test_client_reset_during_decide_does_not_interrupt_it(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """The server's decide runs to completion; its ticket is finished as cancelled, unforwarded."""
    gateway = await make_gateway(admission=GatedAdmission)
    admission = gateway.admission
    assert isinstance(admission, GatedAdmission)
    client = await RawH2Client.connect(gateway.port)
    headers = grpc_request(gateway.port, method("Unary"), ("authorization", TOKEN))
    sid = client.request(headers, grpc_frame(b"x"))
    await wait_for(admission.entered)
    client.reset(sid)
    await client.ping()  # the engine has processed the RST_STREAM
    admission.gate.set()
    await wait_for(admission.decided)  # ran to completion: not cancelled
    outcome = await admission.ticket.wait()
    await client.close()
    assert admission.ticket.names == ["finished"]
    assert outcome.cancelled_by_client
    assert upstream.state.metadata == []  # never forwarded


class FailingAdmission(TestAdmission):
    async def decide(self, head: StreamHead) -> Refuse | Forward:
        raise RuntimeError(f"cannot verify {head.values('authorization')}")


async def test_admission_error_is_internal_and_its_text_is_never_logged(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make_gateway(admission=FailingAdmission)
    call = gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal gateway error"  # not the exception's text
    [record] = [r for r in caplog.records if r.name == "gateway.h2"]
    assert (record.getMessage(), record.error) == ("Admission.decide failed", "RuntimeError")  # type: ignore[attr-defined]
    assert record.exc_info is None
    assert "paid-credential" not in repr(vars(record))


async def test_a_decide_past_the_callback_timeout_is_cancelled(
    make_gateway: GatewayFactory, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A hung server callback is cancelled at callback_timeout; the client gets UNAVAILABLE."""
    gateway = await make_gateway(admission=GatedAdmission, limits=H2Limits(callback_timeout=0.3))
    admission = gateway.admission
    assert isinstance(admission, GatedAdmission)
    call = gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=WAIT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert admission.entered.is_set()
    assert not admission.decided.is_set()  # cancelled inside decide, never finished
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        "gateway busy",
    )
    assert "Admission.decide outlived callback_timeout" in caplog.text
    assert upstream.state.metadata == []
    # The connection and the engine go on: the next call is decided and served.
    admission.gate.set()
    assert await gateway.channel.unary_unary(method("Unary"))(b"y", metadata=PAID) == b"echo:y"


class HangingTicketAdmission(TestAdmission):
    async def decide(self, head: StreamHead) -> Refuse | Forward:
        decision = await super().decide(head)
        if isinstance(decision, Forward):

            async def hang(status: int, grpc_status: int | None) -> None:
                await asyncio.Event().wait()

            decision.ticket.answered = hang  # type: ignore[method-assign]
        return decision


async def test_a_hung_ticket_callback_is_cut_and_the_stream_goes_on(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make_gateway(
        admission=HangingTicketAdmission, limits=H2Limits(callback_timeout=0.3)
    )
    reply = await gateway.channel.unary_unary(method("Unary"))(b"z", metadata=PAID, timeout=WAIT)
    assert reply == b"echo:z"
    assert "Ticket.answered outlived callback_timeout" in caplog.text
