"""A real grpcio client through the engine to a real grpcio upstream: the four call shapes,
metadata and trailers, error statuses, and the trailers-only refusal."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.grpc.conftest import Gateway, Upstream
from tests.grpc.rig import CHALLENGES, TOKEN, method, pattern, pattern_digest

PAID = (("authorization", TOKEN),)


async def test_unary_call_with_metadata_and_trailers_both_ways(
    gateway: Gateway, upstream: Upstream
) -> None:
    metadata = (*PAID, ("x-custom", "c-value"), ("x-custom-bin", b"\x01\x02"))
    call = gateway.channel.unary_unary(method("Unary"))(b"ping", metadata=metadata, timeout=10)
    assert await call == b"echo:ping"
    assert await call.code() == grpc.StatusCode.OK
    assert ("x-initial", "i-value") in list(await call.initial_metadata())
    trailing = list(await call.trailing_metadata())
    assert ("x-trailer", "t-value") in trailing
    assert ("x-trailer-bin", b"\x00\xff") in trailing

    [seen] = upstream.state.metadata
    assert seen["x-custom"] == "c-value"
    assert seen["x-custom-bin"] == b"\x01\x02"
    assert "authorization" not in seen  # the server's header filtering is honoured

    [head] = gateway.admission.heads
    assert (head.method, head.path, head.scheme) == ("POST", method("Unary"), "http")
    assert head.is_grpc
    assert head.peer == "127.0.0.1"
    assert ("x-custom", "c-value") in head.headers
    assert not any(name.startswith(":") for name, _ in head.headers)

    outcome = await gateway.admission.ticket.wait()
    assert gateway.admission.ticket.names == ["answered", "finished"]
    assert gateway.admission.ticket.calls[0] == ("answered", (200, None))
    assert (outcome.status, outcome.grpc_status, outcome.error) == (200, 0, None)
    assert not outcome.cancelled_by_client
    assert outcome.bytes_in == 5 + 4
    assert outcome.bytes_out == 5 + 9


async def test_refusal_is_a_trailers_only_answer_with_both_challenges(gateway: Gateway) -> None:
    call = gateway.channel.unary_unary(method("Unary"))(b"ping", timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "payment required"
    trailing = list(error.trailing_metadata())
    assert [item for item in trailing if item[0] == "www-authenticate"] == list(CHALLENGES)
    assert gateway.admission.tickets == []


async def test_upstream_error_status_and_details_pass_through(gateway: Gateway) -> None:
    call = gateway.channel.unary_unary(method("Fail"))(b"x", metadata=PAID, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such thing: ü"
    outcome = await gateway.admission.ticket.wait()
    # grpc-core answers an abort before any message as trailers-only
    assert gateway.admission.ticket.calls[0] == ("answered", (200, 5))
    assert (outcome.grpc_status, outcome.error) == (5, None)


async def test_server_streaming(gateway: Gateway) -> None:
    call = gateway.channel.unary_stream(method("Download"))(b"20:65536", metadata=PAID, timeout=30)
    received = [message async for message in call]
    assert received == [pattern(i, 65536) for i in range(20)]
    assert await call.code() == grpc.StatusCode.OK
    outcome = await gateway.admission.ticket.wait()
    assert outcome.bytes_out == 20 * (65536 + 5)


async def test_client_streaming(gateway: Gateway) -> None:
    def messages() -> Iterator[bytes]:
        for i in range(20):
            yield pattern(i, 65536)

    call = gateway.channel.stream_unary(method("Upload"))(messages(), metadata=PAID, timeout=30)
    assert await call == f"{20 * 65536}:{pattern_digest(20, 65536)}".encode()
    outcome = await gateway.admission.ticket.wait()
    assert outcome.bytes_in == 20 * (65536 + 5)


async def test_bidi_streaming_interleaves(gateway: Gateway) -> None:
    call = gateway.channel.stream_stream(method("Bidi"))(metadata=PAID, timeout=30)
    for i in range(5):  # each answer arrives before the next request: truly interleaved
        await call.write(f"m{i}".encode())
        assert await call.read() == f"re:m{i}".encode()
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
