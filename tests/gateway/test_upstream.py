"""Upstream failures, big streamed bodies, and graceful shutdown with a request in flight."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
import tracemalloc

import aiohttp
import pytest

from tests.gateway.harness import (
    SLOW_TIMEOUT_SECONDS,
    Buy,
    Gateway,
    MiB,
    fetch,
    poll,
    route_of,
    write_config,
)
from tests.support.bodies import pattern_sha256, pattern_stream

pytestmark = pytest.mark.regtest

BIG = 32 * MiB
PEAK_LIMIT = 8 * MiB


async def test_upstream_down_is_502(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url("/down"))
    async with session.get(gateway.url("/down"), headers=bought.auth) as r:
        assert r.status == 502
        assert r.content_type == "application/json"
        assert (await r.json())["error"] == "upstream_unreachable"
    assert await gateway.metric("l402_upstream_requests_total", route="down", status_class="error")


async def test_slow_upstream_is_504_within_the_timeout(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url("/slow"))
    started = time.monotonic()
    async with session.get(gateway.url("/slow"), headers=bought.auth) as r:
        elapsed = time.monotonic() - started
        assert r.status == 504
        assert (await r.json())["error"] == "upstream_timeout"
    assert gateway.upstream.state.slow_entered.is_set()
    assert SLOW_TIMEOUT_SECONDS * 0.9 <= elapsed < SLOW_TIMEOUT_SECONDS + 2
    assert (
        await gateway.metric("l402_upstream_requests_total", route="slow", status_class="timeout")
        == 1
    )


async def test_upstream_500_does_not_consume_a_per_request_token(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    state = gateway.upstream.state
    bought = await buy(session, gateway.url("/flaky"), "POST")
    for _ in range(2):
        status, _, body = await fetch(session, "POST", gateway.url("/flaky"), headers=bought.auth)
        assert status == 500, body
    assert state.flaky_calls == 2
    assert await gateway.metric("l402_tokens_consumed_total", route="flaky") == 0

    state.flaky_fail = False  # the upstream is fixed
    async with session.post(gateway.url("/flaky"), headers=bought.auth) as r:
        assert r.status == 200
        assert (await r.json())["authorizationHeaders"] == 1
    assert await gateway.metric("l402_tokens_consumed_total", route="flaky") == 1

    async with session.post(gateway.url("/flaky"), headers=bought.auth) as r:
        assert r.status == 402
        assert (await r.json())["reason"] == "already_used"
    assert state.flaky_calls == 3


async def test_per_request_token_down_upstream_keeps_token(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """A 502 (upstream unreachable) on a per-request route gives the token back too."""
    bought = await buy(session, gateway.url("/api/l402/text-generation"), "POST")
    payload = {"prompt": "hello"}
    url = gateway.url("/api/l402/text-generation")
    # Point the route at a closed port by reloading, then back.
    doc = gateway.document
    textgen = route_of(doc, "textgen")
    original = textgen["upstream"]
    textgen["upstream"] = route_of(doc, "down")["upstream"]
    assert gateway.server.reload(write_config(gateway.config_path, doc))
    status, _, _ = await fetch(session, "POST", url, json=payload, headers=bought.auth)
    assert status == 502
    textgen["upstream"] = original
    assert gateway.server.reload(write_config(gateway.config_path, doc))
    async with session.post(url, json=payload, headers=bought.auth) as r:
        assert r.status == 200
        body = await r.json()
    assert body["text"] == "echo: hello"
    assert body["authorizationHeaders"] == 1


async def test_big_bodies_stream_with_bounded_memory(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy, traced: None
) -> None:
    bought = await buy(session, gateway.url("/stream?mib=1"))
    expected = pattern_sha256(BIG)

    tracemalloc.reset_peak()
    async with session.post(
        gateway.url("/echo/upload"), data=pattern_stream(BIG), headers=bought.auth
    ) as r:
        assert r.status == 200, await r.text()
        seen = await r.json()
    _, up_peak = tracemalloc.get_traced_memory()
    assert (seen["size"], seen["sha256"]) == (BIG, expected)
    assert [v for k, v in seen["headers"] if k.lower() == "authorization"] == [bought.authorization]

    tracemalloc.reset_peak()
    digest = hashlib.sha256()
    size = 0
    async with session.get(gateway.url(f"/stream?mib={BIG // MiB}"), headers=bought.auth) as r:
        assert r.status == 200
        async for chunk in r.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
    _, down_peak = tracemalloc.get_traced_memory()
    assert (size, digest.hexdigest()) == (BIG, expected)
    print(f"peak traced memory: up {up_peak / MiB:.2f} MiB, down {down_peak / MiB:.2f} MiB")
    assert up_peak < PEAK_LIMIT
    assert down_peak < PEAK_LIMIT


async def test_body_over_the_limit_is_413_and_keeps_a_per_request_token(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """textgen keeps the default 1 MiB limit: a bigger body never reaches the upstream
    and does not use up the paid token."""
    url = gateway.url("/api/l402/text-generation")
    bought = await buy(session, url, "POST")
    too_big = b'{"prompt": "' + b"x" * MiB + b'"}'
    async with session.post(url, data=too_big, headers=bought.auth) as r:  # Content-Length
        assert r.status == 413
        assert (await r.json())["error"] == "body_too_large"
    async with session.post(url, data=pattern_stream(2 * MiB), headers=bought.auth) as r:  # chunked
        assert r.status == 413
        assert (await r.json())["error"] == "body_too_large"
    async with session.post(url, json={"prompt": "small"}, headers=bought.auth) as r:
        assert r.status == 200
        assert (await r.json())["text"] == "echo: small"
    assert await gateway.metric("l402_tokens_consumed_total", route="textgen") == 1


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


async def test_graceful_shutdown_finishes_in_flight_request(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    state = gateway.upstream.state
    port = gateway.server.public_port
    request = asyncio.create_task(fetch(session, "GET", gateway.url("/hold")))
    await asyncio.wait_for(state.hold_entered.wait(), 10)

    server = gateway.server
    gateway.running.remove(server)
    stopping = asyncio.create_task(server.stop())

    async def listener_closed() -> bool:
        return await asyncio.to_thread(_refuses_connections, port)

    await poll("the public listener to stop accepting", listener_closed, timeout=10)
    assert not request.done()
    assert not stopping.done()

    state.hold_release.set()
    status, _, body = await asyncio.wait_for(request, 10)
    assert status == 200, body
    assert b'"held": true' in body
    await asyncio.wait_for(stopping, 10)


async def test_upstream_dying_mid_body_is_recorded(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the headers no HTTP error can be sent: the client sees a cut body, the log says why."""
    caplog.set_level(logging.INFO, logger="gateway")
    bought = await buy(session, gateway.url("/stream?mib=1"))
    async with session.get(
        gateway.url("/stream?mib=4&die_after_kib=256"), headers=bought.auth
    ) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()

    def access_lines() -> list[logging.LogRecord]:
        return [
            rec
            for rec in caplog.records
            if rec.name == "gateway.access" and rec.__dict__.get("status") == 200
        ]

    async def logged() -> bool:
        return any(rec.__dict__.get("outcome") == "upstream_unreachable" for rec in access_lines())

    await poll("the access line of the cut response", logged, timeout=10)
    line = next(r for r in access_lines() if r.__dict__["outcome"] == "upstream_unreachable")
    assert "after the response started" in line.__dict__["error"]
    assert line.__dict__["route"] == "big"
    assert any(rec.getMessage() == "upstream failed mid-response" for rec in caplog.records)
