"""The shared listener (HTTP/1.1 via aiohttp and h2c on one port), curl, TLS upstreams,
the engine's bounds, and graceful shutdown."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import grpc
import pytest
from aiohttp import web

from gateway.h2engine import FailReason, H2Limits, H2Site
from tests.grpc.conftest import GatewayFactory, Upstream
from tests.grpc.h2client import RawH2Client, grpc_frame, grpc_request
from tests.grpc.rig import TOKEN, WAIT, UpstreamState, method, start_upstream

PAID = (("authorization", TOKEN),)


async def test_same_port_serves_http1_and_grpc(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{gateway.address}/hello") as resp,
    ):
        assert resp.status == 200
        assert resp.version == aiohttp.HttpVersion11
        assert await resp.text() == "hello over HTTP/1.1"
    reply = await gateway.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=10)
    assert reply == b"echo:x"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{gateway.address}/hello") as resp,
    ):
        assert resp.status == 405  # still aiohttp's router after an HTTP/2 connection


async def test_plain_http2_request_goes_through_admission(make_gateway: GatewayFactory) -> None:
    """Non-gRPC HTTP/2 requests are decided too: the refusal is a plain HTTP answer."""
    gateway = await make_gateway()
    client = await RawH2Client.connect(gateway.port)
    sid = client.request(
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/hello?q=1")]
    )
    response = await client.response(sid)
    await client.close()
    assert response.header(b":status") == b"402"
    assert bytes(response.data) == b"payment required\n"
    assert len(response.all(b"www-authenticate")) == 2
    [head] = gateway.admission.heads
    assert (head.method, head.path, head.authority, head.is_grpc) == (
        "GET",
        "/hello?q=1",
        "x",
        False,
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_http2_prior_knowledge(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await make_gateway()
    url = f"http://{gateway.address}{method('Unary')}"
    body = tmp_path / "request"
    body.write_bytes(grpc_frame(b"curl"))
    base = ["curl", "-sS", "-i", "--http2-prior-knowledge", "--max-time", "10", "-X", "POST"]
    grpc_headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]

    refused = await run(*base, *grpc_headers, url)
    assert refused.startswith(b"HTTP/2 200")
    assert b"grpc-status: 13" in refused
    assert b"grpc-message: payment required" in refused
    assert refused.count(b"www-authenticate: ") == 2

    paid = await run(
        *base, *grpc_headers, "-H", f"authorization: {TOKEN}", "--data-binary", f"@{body}", url
    )
    assert paid.startswith(b"HTTP/2 200")
    assert grpc_frame(b"echo:curl") in paid
    assert b"grpc-status: 0" in paid  # curl prints the trailers too


async def run(*argv: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(WAIT):
        out, err = await process.communicate()
    assert process.returncode == 0, err
    return out


def self_signed(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=upstream.test", "-keyout", str(key),
         "-out", str(cert), "-addext", "subjectAltName=DNS:upstream.test"],
        check=True, capture_output=True, timeout=WAIT,
    )  # fmt: skip
    return key, cert


async def test_tls_upstream_with_alpn_h2(
    make_gateway: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    key, cert = self_signed(tmp_path)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    state = UpstreamState()
    server, port = await start_upstream(state, credentials)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.set_alpn_protocols(["h2"])
        target = upstream.target(port=port, tls=context, server_hostname="upstream.test")
        gateway = await make_gateway(target=target)
        unary = gateway.channel.unary_unary(method("Unary"))
        assert await unary(b"tls", metadata=PAID, timeout=10) == b"echo:tls"
        assert len(state.metadata) == 1

        untrusted = ssl.create_default_context()  # system CAs: the self-signed cert fails
        untrusted.set_alpn_protocols(["h2"])
        bad = await make_gateway(target=upstream.target(port=port, tls=untrusted))
        call = bad.channel.unary_unary(method("Unary"))(b"x", metadata=PAID, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await bad.admission.ticket.wait()
        assert bad.admission.ticket.calls[0] == ("failed", FailReason.TLS_FAILED)
        assert len(state.metadata) == 1
    finally:
        await server.stop(None)


async def test_oversized_header_list_closes_the_connection(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(limits=H2Limits(max_header_list_size=8192))
    client = await RawH2Client.connect(gateway.port)
    client.request(grpc_request(gateway.port, method("Unary"), ("x-big", "a" * 16384)))
    await client.wait_closed()
    assert client.goaway is not None
    assert gateway.admission.heads == []


async def test_streams_beyond_the_concurrency_limit_are_not_admitted(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway(limits=H2Limits(max_concurrent_streams=2))
    channel = gateway.channel
    calls = [
        channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=WAIT) for _ in range(3)
    ]
    await upstream.state.wait_hanging(2)
    assert gateway.proxy.stream_count == 2  # the third waits in grpcio for a free stream
    assert len(upstream.state.metadata) == 2
    upstream.state.release.set()
    assert [await call for call in calls] == [b"released"] * 3


async def test_graceful_drain_finishes_open_streams(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway()
    call = gateway.channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=WAIT)
    async with asyncio.timeout(WAIT):
        await upstream.state.started.wait()
    draining_at_release: list[bool] = []

    def release() -> None:
        draining_at_release.append(all(c.draining for c in gateway.proxy._connections))
        upstream.state.release.set()

    drain = asyncio.create_task(gateway.proxy.drain(WAIT))
    # FIFO callbacks: the drain task's first step (GOAWAY, synchronous) runs before the release
    asyncio.get_running_loop().call_soon(release)
    assert await call == b"released"
    async with asyncio.timeout(WAIT):
        await drain
    assert gateway.proxy.connection_count == 0
    assert draining_at_release == [True]


async def test_drain_deadline_ends_streams_with_unavailable(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gateway = await make_gateway()
    call = gateway.channel.unary_unary(method("Hang"))(b"x", metadata=PAID, timeout=WAIT)
    async with asyncio.timeout(WAIT):
        await upstream.state.started.wait()
    await gateway.proxy.drain(0.2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    ticket = gateway.admission.ticket
    await ticket.wait()
    assert ticket.calls[0] == ("failed", FailReason.SHUTDOWN)
    async with asyncio.timeout(WAIT):
        await upstream.state.cancelled.wait()


async def test_two_sites_share_a_port_with_reuse_port(make_gateway: GatewayFactory) -> None:
    """Workers of one server bind the same port (SO_REUSEPORT); each site serves on it."""
    first = await make_gateway()
    runner = web.AppRunner(web.Application())
    await runner.setup()
    sites: list[H2Site] = []
    try:
        for _ in range(2):
            site = H2Site(runner, first.proxy, "127.0.0.1", 0 if not sites else sites[0].port,
                          reuse_port=True)  # fmt: skip
            await site.start()
            sites.append(site)
        assert sites[0].port == sites[1].port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sites[0].port}") as channel:
            reply = await channel.unary_unary(method("Unary"))(b"r", metadata=PAID, timeout=10)
        assert reply == b"echo:r"
    finally:
        await runner.cleanup()
