"""The demo OpenAI-compatible upstream: predictable usage, read back by the meter's own parsers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.demo.llm import USAGE_HEADER
from gateway.demo.upstream import make_signal_app
from gateway.metering import (
    TailCollector,
    UsageProblem,
    UsageSource,
    parse_bundle,
    read_usage,
)
from gateway.metering.sse import events

Client = TestClient[web.Request, web.Application]
TOKENS = parse_bundle({"units": 10**6, "unit": "tokens", "price_sats": 2000, "tail_bytes": 1024})
CHAT = "/v1/chat/completions"


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    return await aiohttp_client(make_signal_app())


def request(stream: bool = False, include_usage: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "demo-llm",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "three more words"}]},
        ],
        "stream": stream,
        **extra,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


async def metered(resp: Any) -> tuple[TailCollector, bytes]:
    tail = TailCollector(TOKENS.tail_bytes)
    body = b""
    async for chunk in resp.content.iter_any():
        tail.feed(chunk)
        body += chunk
    return tail, body


async def test_json_answer_with_predictable_usage(client: Client) -> None:
    resp = await client.post(CHAT, json=request(max_tokens=5))
    assert resp.status == 200
    assert resp.headers[USAGE_HEADER] == "10"
    tail, body = await metered(resp)
    answer = json.loads(body)
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert answer["choices"][0]["message"]["content"] == "w1 w2 w3 w4 w5"
    reading = read_usage(TOKENS, tail=tail, content_type=resp.headers["Content-Type"],
                         content_encoding=resp.headers.get("Content-Encoding"))  # fmt: skip
    assert reading is not None
    assert (reading.units, reading.source) == (10, UsageSource.JSON)


async def test_stream_with_final_usage_chunk(client: Client) -> None:
    resp = await client.post(CHAT, json=request(True, True, max_completion_tokens=300))
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    tail, body = await metered(resp)
    datas = list(events(body, whole=True))
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["total_tokens"] == 305
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.split() == [f"w{i}" for i in range(1, 301)]
    assert tail.truncated  # 300 chunks do not fit in 1 KiB: the usage is read from the tail
    reading = read_usage(TOKENS, tail=tail, content_type=resp.headers["Content-Type"],
                         content_encoding=None)  # fmt: skip
    assert reading is not None
    assert reading.units == 305


async def test_stream_without_include_usage_reports_none(client: Client) -> None:
    resp = await client.post(CHAT, json=request(True))
    tail, _ = await metered(resp)
    reading = read_usage(TOKENS, tail=tail, content_type="text/event-stream", content_encoding=None)
    assert reading is not None
    assert reading.problem is UsageProblem.MISSING
    assert resp.headers[USAGE_HEADER] == str(5 + 16)  # the default completion length


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"not json", {}),
        (json.dumps({"messages": "hi"}).encode(), {}),
        (json.dumps({"messages": [], "max_tokens": 0}).encode(), {}),
        (json.dumps({"messages": [], "max_tokens": "9"}).encode(), {}),
        (json.dumps({"messages": []}).encode(), {"X-Demo-Chunk-Delay-Ms": "9999"}),
    ],
)
async def test_bad_requests(client: Client, body: bytes, headers: dict[str, str]) -> None:
    resp = await client.post(CHAT, data=body, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_a_slow_stream_the_client_abandons(client: Client) -> None:
    resp = await client.post(
        CHAT, json=request(True, True, max_tokens=1000), headers={"X-Demo-Chunk-Delay-Ms": "20"}
    )
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"data: ")
    resp.close()  # walk away mid-stream: the server stops writing, nothing escapes
    again = await client.post(CHAT, json=request(max_tokens=1))
    assert again.status == 200


async def test_the_apps_chunk_delay_applies_unless_a_request_sets_its_own(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    slow = await aiohttp_client(make_signal_app(chunk_delay=0.05))
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = await slow.post(CHAT, json=request(True, max_tokens=4))
    await resp.read()
    assert loop.time() - start >= 4 * 0.05  # four chunks, each after the pause
    glacial = await aiohttp_client(make_signal_app(chunk_delay=30.0))
    async with asyncio.timeout(10):  # 60 s if the request's own 0 were ignored
        resp = await glacial.post(CHAT, json=request(True, max_tokens=2),
                                  headers={"X-Demo-Chunk-Delay-Ms": "0"})  # fmt: skip
        assert b"[DONE]" in await resp.read()
