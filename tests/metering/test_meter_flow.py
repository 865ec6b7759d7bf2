"""A metered request from start to finish: the demo upstream on 127.0.0.1, the meter's core,
and real balances on SQLite and PostgreSQL (what the request path will do)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.demo.upstream import make_signal_app
from gateway.metering import ChargeBasis, UsageProblem, parse_balance, parse_bundle
from gateway.paywall.meter import Admission, Exhausted, Meter
from gateway.store import Store
from gateway.store.types import HoldStatus, SettleStatus

Client = TestClient[web.Request, web.Application]
TOKEN = b"\x42" * 32
TERMS = parse_bundle({"units": 1000, "unit": "tokens", "price_sats": 2000, "tail_bytes": 512})
NOW = 1_700_000_000.0
MESSAGES = [{"role": "user", "content": "five words of prompt here"}]


@pytest.fixture
async def upstream(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    return await aiohttp_client(make_signal_app())


async def forward(
    meter: Meter, upstream: Client, admission: Admission, body: dict[str, Any],
    *, abandon: bool = False,
) -> Any:  # fmt: skip
    """What the proxy will do: relay the answer through the observer, then settle.

    An abandoning client asks the upstream to pace its chunks, so the read it
    walks away after holds the first chunk only, never the final usage chunk."""
    paced = {"X-Demo-Chunk-Delay-Ms": "20"} if abandon else {}
    resp = await upstream.post("/v1/chat/completions", json=body, headers=paced)
    complete = False
    try:
        async for chunk in resp.content.iter_any():
            admission.observer.feed(chunk)
            if abandon:
                break
        else:
            complete = True
    finally:
        resp.close()
    return await meter.settle(
        admission, status=resp.status, complete=complete,
        content_type=resp.headers.get("Content-Type"),
        content_encoding=resp.headers.get("Content-Encoding"),
    )  # fmt: skip


async def admit(meter: Meter, body: dict[str, Any]) -> Admission:
    admission = await meter.admit(TERMS, TOKEN, "chat", json.dumps(body).encode())
    assert isinstance(admission, Admission)
    return admission


async def test_a_bundle_spent_by_json_streams_and_an_abandoned_stream(
    store: Store, upstream: Client
) -> None:
    meter = Meter(store, clock=lambda: NOW)
    credit = await meter.credit(TERMS, TOKEN, b"\x99" * 32, "chat")
    assert credit.credited
    assert (await meter.credit(TERMS, TOKEN, b"\x99" * 32, "chat")).credited is False

    body = {"messages": MESSAGES, "max_tokens": 5}
    first = await admit(meter, body)
    assert parse_balance(first.header) == (995, "tokens", 5)
    done = await forward(meter, upstream, first, body)
    assert (done.charge.units, done.charge.basis) == (10, ChargeBasis.USAGE)
    assert done.settlement.units == 990

    # A stream's final usage chunk; 305 used against 300 reserved: the prompt's 5
    # come from unreserved units.
    stream = {"messages": MESSAGES, "max_tokens": 300, "stream": True,
              "stream_options": {"include_usage": True}}  # fmt: skip
    second = await admit(meter, stream)
    done = await forward(meter, upstream, second, stream)
    assert (done.charge.units, done.settlement.debited, done.settlement.units) == (305, 305, 685)

    # No usage chunk on a complete stream: the estimate.
    bare = {"messages": MESSAGES, "max_tokens": 100, "stream": True}
    third = await admit(meter, bare)
    done = await forward(meter, upstream, third, bare)
    assert (done.charge.basis, done.charge.problem, done.charge.units) == (
        ChargeBasis.ESTIMATE, UsageProblem.MISSING, 100,
    )  # fmt: skip

    # The client walks away after the first chunk: the reservation.
    fourth = await admit(meter, stream)
    done = await forward(meter, upstream, fourth, stream, abandon=True)
    assert (done.charge.basis, done.charge.units) == (ChargeBasis.RESERVATION, 300)
    assert done.settlement.units == 285

    # 285 left: a request asking 4096 holds what is left, and over-use stops at zero.
    big = {"messages": MESSAGES, "max_tokens": 4096}
    last = await admit(meter, big)
    assert (last.reserved, last.available) == (285, 0)
    done = await forward(meter, upstream, last, big)
    assert (done.settlement.debited, done.settlement.shortfall, done.settlement.units) == (
        285, 4101 - 285, 0,
    )  # fmt: skip
    refused = await meter.admit(TERMS, TOKEN, "chat", b"{}")
    assert isinstance(refused, Exhausted)
    assert refused.status is HoldStatus.INSUFFICIENT
    assert parse_balance(refused.header) == (0, "tokens", None)
    balance = await store.get_balance(TOKEN, now=int(NOW))
    assert balance is not None
    assert (balance.credited, balance.debited, balance.units) == (1000, 1000, 0)


async def test_a_count_quota(store: Store, upstream: Client) -> None:
    calls = parse_bundle({"units": 2, "unit": "requests", "price_sats": 10})
    meter = Meter(store, clock=lambda: NOW)
    await meter.credit(calls, TOKEN, b"\x98" * 32, "chat")
    body = {"messages": MESSAGES, "max_tokens": 3}
    for left in (1, 0):
        admission = await meter.admit(calls, TOKEN, "chat", None)
        assert isinstance(admission, Admission)
        assert parse_balance(admission.header) == (left, "requests", 1)
        done = await forward(meter, upstream, admission, body)
        assert (done.charge.units, done.settlement.status) == (1, SettleStatus.SETTLED)
    refused = await meter.admit(calls, TOKEN, "chat", None)
    assert isinstance(refused, Exhausted)
    # A failed upstream answer costs no request.
    await meter.credit(calls, TOKEN, b"\x97" * 32, "chat")
    admission = await meter.admit(calls, TOKEN, "chat", None)
    assert isinstance(admission, Admission)
    done = await meter.settle(admission, status=None, complete=False)
    assert (done.charge.units, done.settlement.units) == (0, 2)
