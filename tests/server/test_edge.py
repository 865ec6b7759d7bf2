"""The listening edge: HTTP details, unpaid bodies, slow and idle clients, connection floods."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import InProcess, in_process, json_of, status_of

LISTEN_LIMITS = {"header_timeout_seconds": 0.5, "keepalive_timeout_seconds": 0.8}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as running:
        yield running


def _request(method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: x", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_over_long_target_is_414(gw: InProcess) -> None:
    answer = await gw.raw(_request("GET", "/paid?" + "a" * 9000))
    assert status_of(answer) == 414
    assert json_of(answer)["error"] == "uri_too_long"
    assert b"aaaa" not in answer


async def test_over_long_header_is_431(gw: InProcess) -> None:
    answer = await gw.raw(_request("GET", "/paid", "X-Big: " + "b" * 9000))
    assert status_of(answer) == 431


@pytest.mark.parametrize(("method", "target"), [("BREW", "/paid"), ("PROPFIND", "/resource")])
async def test_unknown_method_is_501(gw: InProcess, method: str, target: str) -> None:
    """BREW is refused by the parser; PROPFIND is a method no route takes at all."""
    answer = await gw.raw(_request(method, target))
    assert status_of(answer) == 501
    assert gw.invoices.calls == []


async def test_a_route_for_any_method_prices_an_extension_method(gw: InProcess) -> None:
    answer = await gw.raw(_request("PROPFIND", "/paid"))
    assert status_of(answer) == 402


async def test_garbage_is_400_not_501(gw: InProcess) -> None:
    answer = await gw.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
    assert status_of(answer) == 400


async def test_known_path_with_a_method_its_route_does_not_take_is_405(gw: InProcess) -> None:
    async with gw.session.delete(gw.url("/resource")) as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET, HEAD"
    async with gw.session.delete(gw.url("/nothing-here")) as r:
        assert r.status == 404


async def test_unpaid_body_is_not_read(gw: InProcess) -> None:
    """The 402 goes out and the connection closes: a 1 GiB upload is not drained."""
    head = b"POST /paid HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
    started = time.monotonic()
    answer = await gw.raw(head + b"x" * 65536, timeout=5.0)  # lingering would take 10 s+
    assert status_of(answer) == 402
    assert time.monotonic() - started < 5.0


async def test_unpaid_expect_100_continue_gets_402_not_100(gw: InProcess) -> None:
    head = "POST /paid HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    answer = await gw.raw(head.encode())
    assert answer.startswith(b"HTTP/1.1 402")
    assert b"100 Continue" not in answer


async def test_paid_expect_100_continue_gets_100_then_the_answer(gw: InProcess) -> None:
    bought = await gw.buy("/once", "POST")
    head = (
        "POST /once HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        f"Authorization: L402 {bought.macaroon}:{bought.preimage}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.public_port)
    try:
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    assert status_of(answer) == 200
    assert json_of(answer)["size"] == 5


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        while await reader.read(4096):
            pass
    return time.monotonic() - started


async def test_slow_head_is_cut_off(tmp_path: Path) -> None:
    async with in_process(tmp_path, listen=LISTEN_LIMITS | _ports()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.public_port)
        writer.write(b"GET /paid HTTP/1.1\r\nHo")  # and never the rest (slowloris)
        await writer.drain()
        waited = await _closed_by_server(reader, within=5.0)
        writer.close()
        assert waited < 5.0


async def test_idle_keepalive_connection_is_closed(tmp_path: Path) -> None:
    async with in_process(tmp_path, listen=LISTEN_LIMITS | _ports()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.public_port)
        writer.write(b"GET /free HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        await _closed_by_server(reader, within=5.0)  # body, then EOF after the idle timeout
        writer.close()


async def _served(port: int) -> bool:
    """One keep-alive request on a new connection: True when answered, False when refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /free HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.read(12)
    writer.close()
    return head.startswith(b"HTTP/1.1 200")


async def test_connection_cap_refuses_extra_connections_and_admin_still_answers(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, listen={"max_connections": 3} | _ports()) as gw:
        port = gw.server.public_port
        held = []
        for _ in range(3):  # admitted and kept open (keep-alive)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /free HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            held.append(writer)
        assert gw.server.public_gate.open == 3
        assert not await _served(port)
        assert gw.server.public_gate.refused >= 1
        async with gw.session.get(gw.admin + "/healthz") as r:
            assert r.status == 200  # the admin listener has its own connections
        held.pop().close()
        async with asyncio.timeout(5):
            while not await _served(port):  # until the closed one has been let go
                pass
        for writer in held:
            writer.close()


def _ports() -> dict[str, str]:
    from gateway.regtest.processes import free_port

    return {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"}
