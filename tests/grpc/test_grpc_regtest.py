"""A paid gRPC call on real LND: grpcio client -> gateway (h2c) -> grpcio upstream."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gateway.config import load_config
from gateway.l402 import macaroons
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.gateway.harness import pay, routes_document, write_config
from tests.grpc.rig import SERVICE, UpstreamState, method, start_upstream

pytestmark = pytest.mark.regtest


async def test_buy_a_grpc_call_with_lightning(
    regtest: Descriptor, buyer_admin: LndClient, tmp_path: Path
) -> None:
    state = UpstreamState()
    upstream, port = await start_upstream(state)
    document = routes_document(regtest, "http://127.0.0.1:9", tmp_path, closed_port=free_port())
    document["routes"].insert(
        0,
        {"name": "grpc-echo", "path": f"^/{SERVICE}/", "upstream": f"http://127.0.0.1:{port}",
         "price_sats": 21},
    )  # fmt: skip
    server = GatewayServer(load_config(write_config(tmp_path / "routes.yaml", document)))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.public_port}") as channel:
            stub = channel.unary_unary(method("Unary"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub(b"hi", timeout=30)
            assert info.value.code() is grpc.StatusCode.INTERNAL
            l402 = [v for k, v in info.value.trailing_metadata() or () if k == "www-authenticate"]
            fields = dict(p.strip().split("=", 1) for p in l402[1].split(" ", 1)[1].split(","))
            mac, invoice = fields["macaroon"].strip('"'), fields["invoice"].strip('"')
            assert fields["amount_msats"].strip('"') == "21000"
            preimage = await pay(buyer_admin, invoice)
            reply = await stub(b"paid", metadata=(("authorization", f"L402 {mac}:{preimage}"),))
            assert reply == b"echo:paid"
            # The gRPC form too: the macaroon with a preimage caveat, hex, in `macaroon`.
            caveated = macaroons.add_caveat(macaroons.decode(mac), f"preimage={preimage}").hex()
            assert await stub(b"again", metadata=(("macaroon", caveated),)) == b"echo:again"
    finally:
        await server.stop()
        await upstream.stop(grace=None)
