"""The demo signal upstream: EP212 payloads, echo generator, Authorization counting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from gateway.demo.upstream import SIGNALS, make_signal_app, run_signal_upstream

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    return await aiohttp_client(make_signal_app())


@pytest.mark.parametrize(
    ("path", "tier"),
    [("/ep212/premium-signal", "under-cap"), ("/ep212/expensive-signal", "over-cap")],
)
async def test_signal_payload(client: Client, path: str, tier: str) -> None:
    resp = await client.get(path, headers={"Authorization": "L402 mac:" + "ab" * 32})
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    assert body["ok"] is True
    assert body["source"] == "openagents.ep212"
    assert body["route"] == path
    assert body["tier"] == tier
    assert body["signals"] == list(SIGNALS)
    assert len(body["signals"]) >= 3
    assert isinstance(body["note"], str)
    assert body["note"]
    assert uuid.UUID(body["requestId"]).version == 4
    assert body["authorizationForwarded"] is True
    assert body["authorizationHeaders"] == 1
    assert "ab" * 32 not in await resp.text()  # the credential is never echoed


async def test_signal_payload_is_deterministic_apart_from_request_id(client: Client) -> None:
    first = await (await client.get("/ep212/premium-signal")).json()
    second = await (await client.get("/ep212/premium-signal")).json()
    assert first["requestId"] != second["requestId"]
    first.pop("requestId")
    second.pop("requestId")
    assert first == second


async def test_request_id_header_is_echoed_when_sane(client: Client) -> None:
    body = await (
        await client.get("/ep212/premium-signal", headers={"X-Request-Id": "run-42:a.b_c"})
    ).json()
    assert body["requestId"] == "run-42:a.b_c"
    body = await (
        await client.get("/ep212/premium-signal", headers={"X-Request-Id": "<script>"})
    ).json()
    assert body["requestId"] != "<script>"
    assert uuid.UUID(body["requestId"])


@pytest.mark.parametrize("count", [0, 1, 2])
async def test_authorization_headers_are_counted(client: Client, count: int) -> None:
    headers = CIMultiDict([("Authorization", f"L402 m{i}:p") for i in range(count)])
    body = await (await client.get("/ep212/expensive-signal", headers=headers)).json()
    assert body["authorizationHeaders"] == count
    assert body["authorizationForwarded"] is (count > 0)


async def test_text_generation(client: Client) -> None:
    resp = await client.post(
        "/api/l402/text-generation",
        json={"prompt": "hello"},
        headers={"Authorization": "L402 m:p", "X-Request-Id": "r1"},
    )
    assert resp.status == 200
    assert await resp.json() == {
        "ok": True,
        "model": "demo-echo",
        "text": "echo: hello",
        "requestId": "r1",
        "authorizationForwarded": True,
        "authorizationHeaders": 1,
    }


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (b"[1, 2]", "missing_prompt"),
        (b'{"prompt": 5}', "missing_prompt"),
        (b'{"prompt": "   "}', "missing_prompt"),
    ],
)
async def test_text_generation_rejects_bad_input(client: Client, data: bytes, code: str) -> None:
    resp = await client.post(
        "/api/l402/text-generation", data=data, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["ok"] is False
    assert body["error"] == code


async def test_healthz_and_unknown_route(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"ok": True}
    assert (await client.get("/ep212/other-signal")).status == 404
    assert (await client.post("/ep212/premium-signal")).status == 405


async def test_run_signal_upstream_serves_until_cancelled() -> None:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_signal_upstream("127.0.0.1", 0, started=bound.set_result))
    port = await asyncio.wait_for(bound, timeout=10)
    assert port > 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"http://127.0.0.1:{port}/healthz")
