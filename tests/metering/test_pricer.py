"""Our pricer client against a real grpcio Prices server on 127.0.0.1 (written here from the
protocol's facts: a bundle booked per minted challenge, admitted while it has tokens left,
debited from the usage in the reported tail)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.metering import TailCollector, usage_from_tail
from gateway.pricer.client import GrpcPricer
from gateway.pricer.errors import PricerInvalidAnswer, PricerRefused, PricerUnavailable
from gateway.pricer.rpc import prices_pb2, prices_pb2_grpc
from gateway.pricer.types import UsageReport
from gateway.pricer.wire import PricedRequest, priced_request, request_text

from .streams import chat_stream

TOKEN = "ab" * 32
BUNDLE = 1000
PRICE = 2000


class BundleServicer(prices_pb2_grpc.PricesServicer):  # type: ignore[misc]
    """A minimal metering pricer: what meterd does, with one rate (1 sat per 0.5 token)."""

    def __init__(self) -> None:
        self.bundles: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.seen: list[tuple[str, Any]] = []
        self.stall = asyncio.Event()  # never set: a handler waiting on it misses any deadline

    async def GetPrice(self, request: Any, context: Any) -> Any:
        self.seen.append(("GetPrice", request))
        if request.path == "/stall":
            await self.stall.wait()
        if request.path == "/refuse":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unable to determine the model")
        if request.path == "/negative":
            return prices_pb2.GetPriceResponse(price_sats=-5)
        return prices_pb2.GetPriceResponse(price_sats=PRICE)

    async def ChallengeMinted(self, request: Any, context: Any) -> Any:
        self.seen.append(("ChallengeMinted", request))
        self.bundles.setdefault(request.token_id, BUNDLE)
        return prices_pb2.ChallengeMintedResponse()

    async def AuthorizeRequest(self, request: Any, context: Any) -> Any:
        self.seen.append(("AuthorizeRequest", request))
        left = self.bundles.get(request.token_id)
        if left is None:
            return prices_pb2.AuthorizeRequestResponse(allowed=False, reason="unknown L402 token")
        available = left - self.reserved.get(request.token_id, 0)
        if available <= 0:
            return prices_pb2.AuthorizeRequestResponse(
                allowed=False, price_sats=PRICE, reason="token bundle exhausted"
            )
        body = request.http_request_text.split("\r\n\r\n", 1)[1]
        estimate = json.loads(body).get("max_tokens", 100) if body else 100
        self.reserved[request.token_id] = self.reserved.get(request.token_id, 0) + estimate
        return prices_pb2.AuthorizeRequestResponse(allowed=True, reserved_estimate=estimate)

    async def ReportUsage(self, request: Any, context: Any) -> Any:
        self.seen.append(("ReportUsage", request))
        tail = TailCollector()
        tail.feed(request.response_tail)
        reading = usage_from_tail(tail, request.content_type, request.content_encoding)
        used = reading.units or 0
        self.reserved[request.token_id] -= request.reserved_estimate
        before = self.bundles[request.token_id]
        self.bundles[request.token_id] = max(0, before - used)
        return prices_pb2.ReportUsageResponse(
            debited_sats=(before - self.bundles[request.token_id]) * 2,
            remaining_sats=self.bundles[request.token_id] * 2,
        )


async def _serve(servicer: BundleServicer, creds: Any = None) -> tuple[Any, int]:
    server = grpc.aio.server()
    prices_pb2_grpc.add_PricesServicer_to_server(servicer, server)
    port = (
        server.add_secure_port("127.0.0.1:0", creds)
        if creds is not None
        else server.add_insecure_port("127.0.0.1:0")
    )
    await server.start()
    return server, port


@pytest.fixture
async def pricer_server() -> AsyncIterator[tuple[BundleServicer, int]]:
    servicer = BundleServicer()
    server, port = await _serve(servicer)
    yield servicer, port
    await server.stop(None)


CHAT = priced_request(
    "POST",
    "/v1/chat/completions",
    "",
    [("Host", "api.example"), ("Content-Type", "application/json"),
     ("Authorization", "L402 secret-macaroon:secret-preimage"), ("Cookie", "s=1")],
    json.dumps({"model": "demo", "max_tokens": 300}).encode(),
)  # fmt: skip


async def test_a_bundle_through_the_four_calls(pricer_server: tuple[BundleServicer, int]) -> None:
    servicer, port = pricer_server
    async with GrpcPricer.connect(f"127.0.0.1:{port}") as pricer:
        assert await pricer.get_price(CHAT) == PRICE
        await pricer.challenge_minted(CHAT, TOKEN, "inference", PRICE)
        allowed = await pricer.authorize_request(CHAT, TOKEN, "inference")
        assert (allowed.allowed, allowed.reserved_estimate) == (True, 300)
        tail = chat_stream(["hello", " world"], 12, 48)
        debit = await pricer.report_usage(
            UsageReport(
                TOKEN,
                CHAT.path,
                "inference",
                200,
                "text/event-stream",
                True,
                tail,
                "",
                allowed.reserved_estimate,
            )
        )
        assert (debit.debited_sats, debit.remaining_sats) == (120, (BUNDLE - 60) * 2)
        # Spend the rest: the next request is refused with the next bundle's price.
        await pricer.authorize_request(CHAT, TOKEN, "inference")
        await pricer.report_usage(
            UsageReport(
                TOKEN,
                CHAT.path,
                "inference",
                200,
                "text/event-stream",
                True,
                chat_stream(["x"], 900, 100),
                "",
                300,
            )
        )
        refused = await pricer.authorize_request(CHAT, TOKEN, "inference")
        assert (refused.allowed, refused.price_sats, refused.reason) == (
            False, PRICE, "token bundle exhausted",
        )  # fmt: skip
        unknown = await pricer.authorize_request(CHAT, "cd" * 32, "inference")
        assert (unknown.allowed, unknown.reason) == (False, "unknown L402 token")
    # What crossed the wire: credentials never, the body's prefix and the path always.
    minted = next(r for name, r in servicer.seen if name == "ChallengeMinted")
    assert (minted.token_id, minted.price_sats, minted.service_name) == (TOKEN, PRICE, "inference")
    for _, request in servicer.seen:
        text = getattr(request, "http_request_text", "")
        assert "secret" not in text
        assert "Cookie" not in text
    assert '"max_tokens": 300' in minted.http_request_text


async def test_typed_errors(pricer_server: tuple[BundleServicer, int]) -> None:
    _, port = pricer_server
    async with GrpcPricer.connect(f"127.0.0.1:{port}", timeout=0.3) as pricer:
        with pytest.raises(PricerRefused, match="INVALID_ARGUMENT") as refused:
            await pricer.get_price(PricedRequest("/refuse", "GET /refuse HTTP/1.1\r\n\r\n"))
        assert refused.value.method == "GetPrice"
        with pytest.raises(PricerUnavailable, match="DEADLINE_EXCEEDED"):
            await pricer.get_price(PricedRequest("/stall", "GET /stall HTTP/1.1\r\n\r\n"))
        with pytest.raises(PricerInvalidAnswer):
            await pricer.get_price(PricedRequest("/negative", "GET /negative HTTP/1.1\r\n\r\n"))
        with pytest.raises(ValueError, match="token_id"):
            await pricer.authorize_request(CHAT, "not-hex", "inference")
        with pytest.raises(ValueError, match="price"):
            await pricer.challenge_minted(CHAT, TOKEN, "inference", 0)


async def test_a_pricer_that_is_not_there_is_unavailable() -> None:
    servicer = BundleServicer()
    server, port = await _serve(servicer)
    await server.stop(None)  # the port is free again: nothing listens
    async with GrpcPricer.connect(f"127.0.0.1:{port}", timeout=1.0) as pricer:
        with pytest.raises(PricerUnavailable, match="UNAVAILABLE"):
            await pricer.get_price(CHAT)


def _self_signed(tmp: Path) -> tuple[bytes, bytes]:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=pricer", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (tmp / "cert.pem").read_bytes(), (tmp / "key.pem").read_bytes()


async def test_tls_trusts_only_the_pricers_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    servicer = BundleServicer()
    server, port = await _serve(servicer, grpc.ssl_server_credentials([(key, cert)]))
    try:
        async with GrpcPricer.connect(f"127.0.0.1:{port}", tls_cert=cert) as pricer:
            assert await pricer.get_price(CHAT) == PRICE
        (tmp_path / "other").mkdir()
        other, _ = _self_signed(tmp_path / "other")  # another pricer's certificate
        async with GrpcPricer.connect(f"127.0.0.1:{port}", tls_cert=other, timeout=1.0) as wrong:
            with pytest.raises(PricerUnavailable):
                await wrong.get_price(CHAT)
        async with GrpcPricer.connect(f"127.0.0.1:{port}", timeout=1.0) as plain:
            with pytest.raises(PricerUnavailable):
                await plain.get_price(CHAT)
    finally:
        await server.stop(None)


def test_request_text_shape() -> None:
    text = request_text(
        "POST",
        "/v1/x?y=1",
        [("Host", "h"), ("Transfer-Encoding", "chunked"), ("X-Evil", "a\r\nInjected: 1"),
         ("Macaroon", "m"), ("Accept", "text/event-stream")],
        b"\xff" + b"a" * 70_000,
    )  # fmt: skip
    head, body = text.split("\r\n\r\n", 1)
    assert head.split("\r\n") == [
        "POST /v1/x?y=1 HTTP/1.1", "Host: h", "Accept: text/event-stream", "Content-Length: 65536",
    ]  # fmt: skip
    assert body == "\ufffd" + "a" * 65535
    assert request_text("GET", "/", []) == "GET / HTTP/1.1\r\n\r\n"
