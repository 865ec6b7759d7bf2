"""A metered route's request body reaches the upstream whole, however it arrived.

The estimate reads the body ahead (gateway.server.requestdetails); a body that
came whole with the head goes upstream in the head's write, any other is sent
as the prefix read, then the rest streamed (gateway.proxy.exchange). Regtest
coverage of the usage itself: tests/gateway/test_metered.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.metering.estimate import ESTIMATE_BODY_LIMIT
from gateway.proxy import exchange
from tests.server.harness import Bought, InProcess, in_process, json_of, status_of

EXTRA = [
    {"name": "chat", "path": "^/chat", "methods": ["POST"], "max_body_bytes": 4194304,
     "bundle": {"units": 1000000, "unit": "tokens", "price_sats": 10}},
]  # fmt: skip
BODY = json.dumps({"model": "demo", "max_tokens": 7, "pad": "x" * 3000}).encode()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path, extra=EXTRA) as running:
        yield running


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per body streamed upstream after the head (not sent with it)."""
    streamed: list[bool] = []
    original = exchange._send_with_body

    async def counting(*args: Any) -> Any:
        streamed.append(True)
        return await original(*args)

    monkeypatch.setattr(exchange, "_send_with_body", counting)
    return streamed


def head(bought: Bought, *extra: str) -> bytes:
    lines = ["POST /chat HTTP/1.1", "Host: gw", "Connection: close", *extra]
    lines.append(f"Authorization: {bought.auth['Authorization']}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_in_parts(gw: InProcess, parts: list[bytes]) -> bytes:
    """Each part written after a pause (the estimate must wait for the rest)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.public_port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def test_a_body_that_came_with_its_head_is_forwarded_whole(
    gw: InProcess, uploads: list[bool]
) -> None:
    bought = await gw.buy("/chat", "POST")
    answer = await gw.raw(head(bought, f"Content-Length: {len(BODY)}") + BODY)
    assert status_of(answer) == 200
    assert json_of(answer)["size"] == len(BODY)
    assert b"reserved=7" in answer  # the estimate read max_tokens
    assert uploads == []  # read whole for the estimate: sent with the head


@pytest.mark.parametrize("expect", [False, True])
async def test_a_body_in_parts_is_forwarded_whole(
    gw: InProcess, uploads: list[bool], expect: bool
) -> None:
    bought = await gw.buy("/chat", "POST")
    extra = [f"Content-Length: {len(BODY)}"] + (["Expect: 100-continue"] if expect else [])
    answer = await send_in_parts(gw, [head(bought, *extra), BODY[:1000], BODY[1000:]])
    if expect:
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        answer = answer.split(b"\r\n\r\n", 1)[1]
    assert status_of(answer) == 200
    assert json_of(answer)["size"] == len(BODY)
    assert b"reserved=7" in answer
    assert uploads == []  # the estimate waited for all of it


async def test_a_chunked_body_is_forwarded_whole(gw: InProcess, uploads: list[bool]) -> None:
    bought = await gw.buy("/chat", "POST")
    framed = chunked(BODY, 700)
    answer = await send_in_parts(
        gw, [head(bought, "Transfer-Encoding: chunked"), framed[:1500], framed[1500:]]
    )
    assert status_of(answer) == 200
    assert json_of(answer)["size"] == len(BODY)
    assert b"reserved=7" in answer
    [seen] = [r for r in gw.seen.requests if r["size"] == len(BODY)]
    assert ["Transfer-Encoding", "chunked"] in seen["headers"]
    assert uploads == [True]  # no declared length: streamed, chunked, as read


async def test_a_body_beyond_the_estimate_limit_is_streamed_after_its_prefix(
    gw: InProcess, uploads: list[bool]
) -> None:
    bought = await gw.buy("/chat", "POST")
    big = json.dumps({"max_tokens": 7, "pad": "x" * (ESTIMATE_BODY_LIMIT + 10)}).encode()
    answer = await send_in_parts(gw, [head(bought, f"Content-Length: {len(big)}"), big])
    # The test upstream reads at most 1 MiB (aiohttp's default): its own 413 shows that
    # the body went on past the prefix the gateway read.
    assert status_of(answer) == 413
    assert answer.endswith(b"Maximum request body size 1048576 exceeded.")
    assert b"reserved=4096" in answer  # too large to read: the route's estimate
    assert uploads == [True]
