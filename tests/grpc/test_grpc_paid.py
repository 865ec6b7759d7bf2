"""Paid gRPC through the whole gateway: a real grpcio client, the gateway's public port
(HTTP/1.1 and h2c on one socket), a real grpcio upstream.

The paywall is the one HTTP/1.1 requests go through (gateway.paywall.decision);
LND's invoice role is the named fake MemoryInvoiceSource here, real LND in
tests/grpc/test_grpc_regtest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.l402 import macaroons
from gateway.regtest.processes import free_port
from tests.grpc.rig import SERVICE, UpstreamState, method, start_upstream
from tests.server.harness import InProcess, in_process

UNARY = method("Unary")
ONCE = "/test.Once/Unary"


@pytest.fixture
async def grpc_upstream() -> AsyncIterator[tuple[UpstreamState, int]]:
    state = UpstreamState()
    server, port = await start_upstream(state)
    yield state, port
    await server.stop(grace=None)


def _routes(port: int) -> list[dict[str, Any]]:
    upstream = f"http://127.0.0.1:{port}"
    return [
        {"name": "echo", "path": f"^/{SERVICE}/", "upstream": upstream, "price_sats": 10},
        {"name": "once", "path": "^/test.Once/", "upstream": upstream, "price_sats": 3,
         "token_mode": "per-request", "path_rewrite": {"pattern": "^/test.Once/",
                                                       "replacement": f"/{SERVICE}/"}},
        {"name": "down", "path": "^/test.Down/", "upstream": f"http://127.0.0.1:{free_port()}",
         "price_sats": 2, "token_mode": "per-request",
         "path_rewrite": {"pattern": "^/test.Down/", "replacement": f"/{SERVICE}/"}},
        {"name": "web", "path": "^/web", "upstream": upstream, "price_sats": 0},
        {"name": "metered", "path": "^/test.Metered/", "upstream": upstream,
         "bundle": {"units": 100, "unit": "requests", "price_sats": 5}},
        {"name": "gift", "path": "^/test.Gift/", "upstream": upstream, "price_sats": 4,
         "freebies": {"per_client": 1}, "rate_limits": [{"requests": 1, "per": "1h"}],
         "path_rewrite": {"pattern": "^/test.Gift/", "replacement": f"/{SERVICE}/"}},
    ]  # fmt: skip


@pytest.fixture
async def gw(tmp_path: Path, grpc_upstream: tuple[UpstreamState, int]) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path, routes=_routes(grpc_upstream[1])) as running:
        yield running


async def call(
    gw: InProcess, path: str, request: bytes = b"hi", metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[bytes | None, grpc.aio.AioRpcError | None]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.server.public_port}") as channel:
        stub = channel.unary_unary(path)
        try:
            return await stub(request, metadata=metadata, timeout=30), None
        except grpc.aio.AioRpcError as exc:
            return None, exc


def _challenge(exc: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(macaroon base64, invoice) from the trailers-only answer's WWW-Authenticate values."""
    values = [v for k, v in exc.trailing_metadata() or () if k == "www-authenticate"]
    assert [v.split(" ", 1)[0] for v in values] == ["LSAT", "L402"]
    fields = dict(part.strip().split("=", 1) for part in values[1].split(" ", 1)[1].split(","))
    return fields["macaroon"].strip('"'), fields["invoice"].strip('"')


async def _pay(gw: InProcess, path: str) -> str:
    _, exc = await call(gw, path)
    assert exc is not None
    assert exc.code() is grpc.StatusCode.INTERNAL
    assert exc.details() == "payment required"
    mac, _invoice = _challenge(exc)
    payment_hash = macaroons.decode(mac).identifier[2:34]
    return f"L402 {mac}:{gw.invoices.preimage_for(payment_hash).hex()}"


async def test_unpaid_call_gets_the_trailers_only_challenge(gw: InProcess) -> None:
    _, exc = await call(gw, UNARY)
    assert exc is not None
    assert exc.code() is grpc.StatusCode.INTERNAL
    assert exc.details() == "payment required"
    _challenge(exc)
    assert gw.invoices.calls[-1][0] == 10_000


async def test_paid_call_reaches_the_upstream_with_one_authorization(
    gw: InProcess, grpc_upstream: tuple[UpstreamState, int]
) -> None:
    authorization = await _pay(gw, UNARY)
    reply, exc = await call(gw, UNARY, b"ping", (("authorization", authorization),))
    assert exc is None
    assert reply == b"echo:ping"
    seen = grpc_upstream[0].metadata[-1]
    assert seen["authorization"] == authorization
    assert await gw.metric("l402_paid_requests_total", route="echo") == 1


async def test_grpc_macaroon_metadata_with_preimage_caveat(gw: InProcess) -> None:
    authorization = await _pay(gw, UNARY)
    mac, preimage = authorization.removeprefix("L402 ").split(":")
    with_preimage = macaroons.add_caveat(macaroons.decode(mac), f"preimage={preimage}").hex()
    for name in ("macaroon", "token"):
        reply, exc = await call(gw, UNARY, b"m", ((name, with_preimage),))
        assert exc is None, (name, exc)
        assert reply == b"echo:m"


async def test_single_use_token_is_consumed_once(gw: InProcess) -> None:
    authorization = await _pay(gw, ONCE)
    reply, exc = await call(gw, ONCE, b"1", (("authorization", authorization),))
    assert exc is None
    assert reply == b"echo:1"
    _, exc = await call(gw, ONCE, b"2", (("authorization", authorization),))
    assert exc is not None
    assert exc.code() is grpc.StatusCode.INTERNAL
    assert await gw.metric("l402_tokens_consumed_total", route="once") == 1


async def test_upstream_down_is_unavailable_and_keeps_the_token(gw: InProcess) -> None:
    authorization = await _pay(gw, "/test.Down/Unary")
    for _ in range(2):
        _, exc = await call(gw, "/test.Down/Unary", b"x", (("authorization", authorization),))
        assert exc is not None
        assert exc.code() is grpc.StatusCode.UNAVAILABLE
    assert await gw.metric("l402_tokens_consumed_total", route="down") == 0


async def test_forged_credential_is_refused_with_a_fresh_challenge(gw: InProcess) -> None:
    authorization = await _pay(gw, UNARY)
    mac, _ = authorization.removeprefix("L402 ").split(":")
    forged = f"L402 {mac}:{'00' * 32}"
    _, exc = await call(gw, UNARY, b"x", (("authorization", forged),))
    assert exc is not None
    assert exc.code() is grpc.StatusCode.INTERNAL
    _challenge(exc)


async def test_unknown_service_is_unimplemented(gw: InProcess) -> None:
    _, exc = await call(gw, "/no.Such/Method")
    assert exc is not None
    assert exc.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_http1_still_served_on_the_same_port(gw: InProcess) -> None:
    async with gw.session.get(gw.url("/web")) as r:
        # Answered over HTTP/1.1 by the proxy (the gRPC upstream speaks no HTTP/1.1).
        assert r.status == 502
        assert (await r.json())["error"] == "upstream_unreachable"


async def test_a_metered_route_is_refused_over_grpc_before_any_challenge(gw: InProcess) -> None:
    minted = len(gw.invoices.calls)
    _, exc = await call(gw, "/test.Metered/Unary")
    assert exc is not None
    assert exc.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "HTTP/1.1" in (exc.details() or "")
    assert len(gw.invoices.calls) == minted  # no invoice for what cannot be served


async def test_freebies_and_rate_limits_over_grpc(gw: InProcess) -> None:
    reply, exc = await call(gw, "/test.Gift/Unary", b"free")
    assert exc is None  # the one freebie of this client
    assert reply == b"echo:free"
    _, exc = await call(gw, "/test.Gift/Unary", b"again")
    assert exc is not None
    assert exc.code() is grpc.StatusCode.INTERNAL  # used up: the challenge
    authorization = await _pay(gw, "/test.Gift/Unary")
    # The freebie took the client's one rate-limit token; the paid credential has its own.
    reply, exc = await call(gw, "/test.Gift/Unary", b"paid", (("authorization", authorization),))
    assert exc is None
    _, exc = await call(gw, "/test.Gift/Unary", b"more", (("authorization", authorization),))
    assert exc is not None
    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await gw.metric("l402_freebies_total", route="gift") == 1
    assert await gw.metric("l402_requests_rate_limited_total", route="gift") == 1
