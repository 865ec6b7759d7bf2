"""Routes priced and metered by an Aperture pricer (pricesrpc over gRPC), through the gateway.

Against a grpcio `Prices` server on 127.0.0.1 written here from the protocol's
facts (it records every call), and against the real meterd of Aperture's
master (skipped, saying why, without its source). Real LND on regtest.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from gateway.config import load_config
from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.metering import TailCollector, usage_from_tail
from gateway.pricer.rpc import prices_pb2, prices_pb2_grpc
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.gateway.harness import (
    Bought,
    Buy,
    Gateway,
    Upstream,
    poll,
    routes_document,
    write_config,
)
from tests.support.clock import FakeClock
from tests.support.meterd import MeterdProcess, MeterdUnavailable, find_meterd, meterd_required

pytestmark = pytest.mark.regtest

CHAT = "/v1/chat/completions"
PRICED = "/ep212/premium-signal"  # a dynamic price from the pricer, not metered
BUNDLE_SATS = 20


def chat(max_tokens: int = 10) -> dict[str, Any]:
    return {
        "model": "demo",
        "messages": [{"role": "user", "content": "hi there"}],
        "max_tokens": max_tokens,
    }


class RecordingPricer(prices_pb2_grpc.PricesServicer):  # type: ignore[misc]
    """Books bundles of `units` tokens, admits while any are left, debits reported usage."""

    def __init__(self, units: int = 100) -> None:
        self.units = units
        self.bundles: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []

    def named(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]

    async def GetPrice(self, request: Any, context: Any) -> Any:
        self.calls.append(("GetPrice", request))
        return prices_pb2.GetPriceResponse(price_sats=9 if request.path == PRICED else BUNDLE_SATS)

    async def ChallengeMinted(self, request: Any, context: Any) -> Any:
        self.calls.append(("ChallengeMinted", request))
        self.bundles[request.token_id] = self.units
        return prices_pb2.ChallengeMintedResponse()

    async def AuthorizeRequest(self, request: Any, context: Any) -> Any:
        self.calls.append(("AuthorizeRequest", request))
        left = self.bundles.get(request.token_id, 0)
        if left <= 0:
            return prices_pb2.AuthorizeRequestResponse(
                allowed=False, price_sats=BUNDLE_SATS, reason="token bundle exhausted"
            )
        body = json.loads(request.http_request_text.split("\r\n\r\n", 1)[1])
        return prices_pb2.AuthorizeRequestResponse(
            allowed=True, reserved_estimate=body["max_tokens"]
        )

    async def ReportUsage(self, request: Any, context: Any) -> Any:
        self.calls.append(("ReportUsage", request))
        tail = TailCollector()
        tail.feed(request.response_tail)
        used = usage_from_tail(tail, request.content_type, request.content_encoding).units or 0
        self.bundles[request.token_id] = max(0, self.bundles[request.token_id] - used)
        return prices_pb2.ReportUsageResponse(debited_sats=used, remaining_sats=0)


class PricerServer:
    def __init__(self) -> None:
        self.servicer = RecordingPricer()
        self.port = free_port()
        self.server: Any = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        prices_pb2_grpc.add_PricesServicer_to_server(self.servicer, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None


@pytest.fixture
async def pricer() -> AsyncIterator[PricerServer]:
    server = PricerServer()
    await server.start()
    yield server
    await server.stop()


def priced_routes(upstream: str, address: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "chat",
            "path": f"^{CHAT}$",
            "methods": ["POST"],
            "upstream": upstream,
            "pricing": {"grpc": address, "metered": True, "max_price_sats": 100},
        },
        {
            "name": "priced",
            "path": f"^{PRICED}$",
            "upstream": upstream,
            "pricing": {
                "grpc": address,
                "fallback_price_sats": 7,
                "max_price_sats": 50,
                "timeout_seconds": 1,
            },
        },
    ]


@pytest.fixture
def routes_config(
    regtest: Descriptor, upstream: Upstream, tmp_path: Path, pricer: PricerServer
) -> Path:
    document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
    document["routes"] = priced_routes(upstream.url, f"127.0.0.1:{pricer.port}")
    return write_config(tmp_path / "routes.yaml", document)


def token_hex(bought: Bought) -> str:
    return Identifier.decode(macaroons.decode(bought.macaroon).identifier).token_id.hex()


async def test_a_pricer_books_admits_and_debits_a_bundle(
    gateway: Gateway, buy: Buy, pricer: PricerServer
) -> None:
    served = pricer.servicer
    bought = await buy(gateway.session, gateway.url(CHAT), "POST", json=chat())
    assert bought.challenge["price_msats"] == BUNDLE_SATS * 1000  # GetPrice's quote
    (minted,) = served.named("ChallengeMinted")
    assert (minted.token_id, minted.price_sats, minted.service_name) == (
        token_hex(bought),
        BUNDLE_SATS,
        "chat",
    )
    assert '"max_tokens": 10' in minted.http_request_text  # the body was read for the pricer

    async with gateway.session.post(
        gateway.url(CHAT), json=chat(30), headers={**bought.auth, "Accept-Encoding": "gzip"}
    ) as r:
        assert r.status == 200
        assert "L402-Balance" not in r.headers  # the pricer keeps the balance
        await r.read()
    (authorized,) = served.named("AuthorizeRequest")
    assert authorized.token_id == token_hex(bought)
    text = authorized.http_request_text
    assert text.startswith(f"POST {CHAT} HTTP/1.1\r\n")
    assert "Authorization" not in text  # never the credential

    async def reported() -> bool:
        return len(served.named("ReportUsage")) == 1

    await poll("the usage report", reported, timeout=20)
    (report,) = served.named("ReportUsage")
    assert (report.token_id, report.http_status, report.complete) == (token_hex(bought), 200, True)
    assert (report.reserved_estimate, report.path, report.content_encoding) == (30, CHAT, "")
    assert report.content_type.startswith("application/json")
    assert b'"total_tokens": 32' in report.response_tail  # 2 words + 30
    assert served.bundles[token_hex(bought)] == 100 - 32
    assert await gateway.metric("l402_meter_units_served_total", route="chat", unit="sat") == 32

    # Spent: AuthorizeRequest refuses, and the buyer gets a 402 for the next bundle.
    served.bundles[token_hex(bought)] = 0
    async with gateway.session.post(gateway.url(CHAT), json=chat(), headers=bought.auth) as r:
        assert r.status == 402
        refusal = await r.json()
    assert refusal["reason"] == "exhausted"
    assert refusal["price_msats"] == BUNDLE_SATS * 1000
    assert len(served.named("ChallengeMinted")) == 2


async def test_a_pricer_that_is_down(gateway: Gateway, buy: Buy, pricer: PricerServer) -> None:
    async with gateway.session.get(gateway.url(PRICED)) as r:
        assert r.status == 402
        assert (await r.json())["price_msats"] == 9000  # GetPrice's price
    bought = await buy(gateway.session, gateway.url(CHAT), "POST", json=chat())
    await pricer.stop()

    # Not metered: the fallback price, as with the HTTP hook.
    async with gateway.session.get(gateway.url(PRICED)) as r:
        assert r.status == 402
        assert (await r.json())["price_msats"] == 7000
    assert await gateway.metric("l402_pricing_fallbacks_total", route="priced") == 1
    # Metered: nothing is sold or served unmetered.
    async with gateway.session.post(gateway.url(CHAT), json=chat()) as r:
        assert r.status == 503
        assert (await r.json())["error"] == "pricer_unavailable"
        assert r.headers["Retry-After"] == "5"
    async with gateway.session.post(gateway.url(CHAT), json=chat(), headers=bought.auth) as r:
        assert r.status == 503
        assert (await r.json())["error"] == "pricer_unavailable"
    errors = await gateway.metric("l402_pricer_rpc_errors_total", method="AuthorizeRequest")
    assert errors >= 1


# -- the real meterd ------------------------------------------------------------------------

IN_MSAT = OUT_MSAT = 100
METERD_BUNDLE = 1000
METERD_SATS = (METERD_BUNDLE * (IN_MSAT + OUT_MSAT) + 1999) // 2000  # the blended quote: 100


@pytest.fixture(scope="module")
def meterd_binary() -> Path:
    try:
        return find_meterd()
    except MeterdUnavailable as exc:
        if meterd_required():
            pytest.fail(f"real meterd unavailable: {exc} (required: CI or L402_REQUIRE_METERD=1)")
        pytest.skip(f"real meterd unavailable: {exc}")


@pytest.fixture
def meterd(meterd_binary: Path) -> Iterator[MeterdProcess]:
    config = {
        "bundletokens": METERD_BUNDLE,
        "estimatedtokens": 100,
        "defaultmodel": "demo",
        "models": {"demo": {"inputmsatpertoken": IN_MSAT, "outputmsatpertoken": OUT_MSAT}},
    }
    with MeterdProcess(meterd_binary, config) as process:
        yield process


GatewayFactory = Callable[[list[dict[str, Any]]], Awaitable[Gateway]]


@pytest.fixture
async def gateway_factory(
    regtest: Descriptor,
    upstream: Upstream,
    tmp_path: Path,
    clock: FakeClock,
    session: aiohttp.ClientSession,
) -> AsyncIterator[GatewayFactory]:
    """A gateway on the given routes (the module's `routes_config` needs the recording pricer)."""
    made: list[Gateway] = []

    async def make(routes: list[dict[str, Any]]) -> Gateway:
        document = routes_document(regtest, upstream.url, tmp_path, closed_port=free_port())
        document["routes"] = routes
        path = write_config(tmp_path / "routes-made.yaml", document)
        server = GatewayServer(load_config(path), clock=clock)
        await server.start()
        made.append(Gateway(server, path, document, clock, upstream, session, [server]))
        return made[-1]

    yield make
    for gateway in made:
        for running in reversed(gateway.running):
            await running.stop()


async def test_the_real_meterd_keeps_the_bundle(
    upstream: Upstream, meterd: MeterdProcess, gateway_factory: GatewayFactory, buy: Buy
) -> None:
    routes = priced_routes(upstream.url, meterd.address)
    routes[0]["pricing"]["max_price_sats"] = 200
    gateway: Gateway = await gateway_factory(routes)
    bought = await buy(gateway.session, gateway.url(CHAT), "POST", json=chat())
    assert bought.challenge["price_msats"] == METERD_SATS * 1000

    stream = chat(48) | {"stream": True, "stream_options": {"include_usage": True}}
    async with gateway.session.post(gateway.url(CHAT), json=stream, headers=bought.auth) as r:
        assert r.status == 200
        assert (await r.read()).endswith(b"data: [DONE]\n\n")
    # meterd read the usage from the SSE tail: (2 + 48) tokens x 100 msat = 5 sats.
    name = "l402_meter_units_served_total"

    async def debited() -> bool:
        return await gateway.metric(name, route="chat", unit="sat") > 0

    await poll("meterd's debit", debited, timeout=20)
    assert await gateway.metric(name, route="chat", unit="sat") == 5

    # A generation larger than the bundle: meterd clamps at 0, then refuses with a new quote.
    async with gateway.session.post(gateway.url(CHAT), json=chat(2000), headers=bought.auth) as r:
        assert r.status == 200
        await r.read()

    async def refused() -> bool:
        async with gateway.session.post(gateway.url(CHAT), json=chat(), headers=bought.auth) as r:
            if r.status != 402:
                await r.read()
                return False
            body = await r.json()
            return bool(body["reason"] == "exhausted" and body["price_msats"] == METERD_SATS * 1000)

    await poll("meterd to refuse the spent bundle", refused, timeout=20)
