"""LND's REST proxy for `POST /v2/router/send`, in front of the buyer's real gRPC port.

Our regtest nodes run with `--norest`, but the built-in LND wallets of
l402-requests and l402sdk speak only REST. LND's REST proxy is grpc-gateway:
it copies the `Grpc-Metadata-macaroon` header into gRPC metadata, parses the
JSON body into `routerrpc.SendPaymentRequest` and streams every `lnrpc.Payment`
update as a `{"result": ...}` JSON line, with proto field names, enums by name,
64-bit integers as strings and `bytes` in base64. This module does exactly that
for the one method both clients call; the payment itself is made by the real
buyer LND, and LND checks the macaroon.

`payment_preimage` is a `string` field in `lnrpc.Payment` (hex), so REST
returns hex: that is what l402-requests 0.9.0 base64-decodes into 48 bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
from aiohttp import web
from google.protobuf import json_format

from gateway.lightning.lnd.rpc import router_pb2, router_pb2_grpc


class LndRestRouter:
    """An aiohttp server on 127.0.0.1 serving `POST /v2/router/send` over plain HTTP."""

    def __init__(self, rpc: str, tls_cert: str) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_cert).read_bytes())
        self._channel = grpc.aio.secure_channel(rpc, credentials)
        self._router = router_pb2_grpc.RouterStub(self._channel)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.calls = 0

    async def __aenter__(self) -> LndRestRouter:
        app = web.Application()
        app.router.add_post("/v2/router/send", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._channel.close()

    async def _send(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        macaroon = request.headers.get("Grpc-Metadata-macaroon", "")
        body = await request.json()
        message = json_format.ParseDict(
            body, router_pb2.SendPaymentRequest(), ignore_unknown_fields=True
        )
        stream = self._router.SendPaymentV2(
            message, metadata=(("macaroon", macaroon),), timeout=message.timeout_seconds + 15
        )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            async for update in stream:
                result = json_format.MessageToDict(
                    update,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
                await response.write(json.dumps({"result": result}).encode() + b"\n")
        except grpc.aio.AioRpcError as exc:
            error = {"code": exc.code().value[0], "message": exc.details() or "", "details": []}
            await response.write(json.dumps({"error": error}).encode() + b"\n")
        finally:
            stream.cancel()
        await response.write_eof()
        return response
