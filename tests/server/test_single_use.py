"""Single-use tokens: consumed once, never burned by our side, never stretched by a slow client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.server.harness import Bought, InProcess, in_process, json_of, status_of


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as running:
        yield running


async def post(gw: InProcess, path: str, bought: Bought, body: bytes = b"{}") -> int:
    async with gw.session.post(gw.url(path), data=body, headers=bought.auth) as r:
        await r.read()
        return r.status


async def test_consumed_once_on_an_answer_below_500(gw: InProcess) -> None:
    bought = await gw.buy("/once", "POST")
    assert await post(gw, "/once", bought) == 200
    async with gw.session.post(gw.url("/once"), data=b"{}", headers=bought.auth) as r:
        assert (r.status, (await r.json())["reason"]) == (402, "already_used")
    assert await gw.metric("l402_tokens_consumed_total", route="once") == 1


async def test_upstream_5xx_gives_the_token_back(gw: InProcess) -> None:
    bought = await gw.buy("/once", "POST")
    assert await post(gw, "/once?status=503", bought) == 503
    assert await post(gw, "/once?status=500", bought) == 500
    assert await post(gw, "/once", bought) == 200
    assert await post(gw, "/once", bought) == 402


async def test_concurrent_use_is_409(gw: InProcess) -> None:
    bought = await gw.buy("/hold", "GET")
    first = asyncio.create_task(gw.session.get(gw.url("/hold"), headers=bought.auth))
    await gw.seen.held.wait()
    async with gw.session.get(gw.url("/hold"), headers=bought.auth) as r:
        assert r.status == 409
        assert r.headers["Retry-After"] == "1"
    gw.seen.hold.set()
    async with await first as r:
        assert r.status == 200


class _Outcomes(logging.Handler):
    """Collects the access log's outcomes and wakes waiters (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.outcomes.append(str(record.__dict__.get("outcome")))
        self.changed.set()

    async def wait_for(self, outcome: str) -> None:
        async with asyncio.timeout(10):
            while outcome not in self.outcomes:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def outcomes() -> Iterator[_Outcomes]:
    handler = _Outcomes()
    logger = logging.getLogger("gateway.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


async def test_client_gone_before_the_answer_keeps_its_token(
    gw: InProcess, outcomes: _Outcomes
) -> None:
    """Decision (docs/status-codes.md): nothing was delivered, so nothing is consumed."""
    bought = await gw.buy("/hold", "GET")
    request = (
        "GET /hold HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: L402 {bought.macaroon}:{bought.preimage}\r\n\r\n"
    )
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.public_port)
    writer.write(request.encode())
    await writer.drain()
    await gw.seen.held.wait()
    writer.close()
    await outcomes.wait_for("client_disconnected")
    await gw.seen.cancelled.wait()  # the upstream request was dropped, not left running
    gw.seen.hold.set()
    async with gw.session.get(gw.url("/hold"), headers=bought.auth) as r:
        assert r.status == 200
    assert await gw.metric("l402_tokens_consumed_total", route="held") == 1


async def test_slow_upload_past_its_deadline_is_408_and_keeps_the_token(gw: InProcess) -> None:
    """`once` has request_body_timeout_seconds: 2: the upload cannot outlive its lease."""
    bought = await gw.buy("/once", "POST")
    head = (
        "POST /once HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n"
        f"Authorization: L402 {bought.macaroon}:{bought.preimage}\r\n\r\n"
    )
    answer = await gw.raw(head.encode() + b"x" * 10, timeout=10)  # 90 bytes never come
    assert status_of(answer) == 408
    assert json_of(answer)["error"] == "request_body_timeout"
    assert gw.seen.requests == []  # the upstream never answered the partial request
    assert await post(gw, "/once", bought) == 200


async def test_a_request_that_lost_its_lease_is_not_answered_as_paid(gw: InProcess) -> None:
    """The slow-upload chain: only the holder of the current lease gets an answer."""
    bought = await gw.buy("/once", "POST")
    head = (
        "POST /once HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n"
        f"Authorization: L402 {bought.macaroon}:{bought.preimage}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.public_port)
    writer.write(head.encode() + b"ab")  # half the body: this request holds the lease
    await writer.drain()
    await gw.seen.entered.wait()  # forwarded: so it holds the lease
    gw.clock.advance(3600)  # its lease lapses (the store's clock is the gateway's)
    assert await post(gw, "/once", bought, b"{}") == 200  # takes the token over, consumes it
    writer.write(b"cd")  # the first request finally completes its body
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert status_of(answer) == 409
    assert json_of(answer)["error"] == "lease_lost"
    assert await gw.metric("l402_tokens_consumed_total", route="once") == 1
