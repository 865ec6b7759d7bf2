"""Test doubles for the buyer: real signed BOLT11 invoices, a real L402 seller
on 127.0.0.1 (pymacaroons tokens, Aperture's identifier layout), a fake payer
that "pays" by looking up the seller's preimage, and a wallet executor app.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import bolt11
from aiohttp import web
from bolt11 import Bolt11, MilliSatoshi, TagChar, Tags
from coincurve import PrivateKey
from pymacaroons import MACAROON_V2, Macaroon, Verifier
from pymacaroons.serializers.binary_serializer import BinarySerializer

from gateway.buyer.payers import PaymentReceipt
from gateway.l402 import challenge as wire

_AUTH = re.compile(r"(?:LSAT|L402) (\S+?):([a-f0-9]{64})")


def make_invoice(
    key: PrivateKey,
    amount_msats: int | None,
    payment_hash: bytes,
    *,
    network: str = "bcrt",
    timestamp: int | None = None,
    expiry: int = 3600,
    description: str = "l402 buyer test",
    payee: PrivateKey | None = None,
) -> str:
    """A real BOLT11 invoice signed by `key`; `payee` puts an `n` field (maybe a lie) in it."""
    tags = Tags()
    tags.add(TagChar.payment_hash, payment_hash.hex())
    tags.add(TagChar.payment_secret, secrets.token_hex(32))
    tags.add(TagChar.description, description)
    tags.add(TagChar.expire_time, expiry)
    if payee is not None:
        tags.add(TagChar.payee, payee.public_key.format(compressed=True).hex())
    invoice = Bolt11(
        currency=network,
        date=int(time.time()) if timestamp is None else timestamp,
        tags=tags,
        amount_msat=None if amount_msats is None else MilliSatoshi(amount_msats),
    )
    return bolt11.encode(invoice, private_key=key.to_hex(), keep_payee=payee is not None)


def mint_macaroon(root_key: bytes, payment_hash: bytes, caveats: tuple[str, ...] = ()) -> str:
    """Aperture-style token: V2, location "lsat", identifier 0x0000|hash|token_id, std b64."""
    identifier = b"\x00\x00" + payment_hash + secrets.token_bytes(32)
    mac = Macaroon(location="lsat", identifier=identifier, key=root_key, version=MACAROON_V2)
    for caveat in caveats:
        mac.add_first_party_caveat(caveat)
    return base64.b64encode(BinarySerializer().serialize_raw(mac)).decode("ascii")


@dataclass
class RouteSpec:
    price_msats: int
    mode: str = "reusable"  # reusable | per_request | always_402
    reject_status: int = 402  # what a refused credential gets (401 carries no challenge)
    # aperture (LSAT + L402 headers, text body) | token (L402 token=, version=) |
    # gateway (this gateway's own wire format: gateway.l402.challenge headers and JSON body) |
    # no_invoice (a malformed challenge whose JSON body still carries the macaroon)
    style: str = "aperture"
    wrong_hash: bool = False  # invoice hash differs from the macaroon's
    network: str = "bcrt"
    caveats: tuple[str, ...] = ()  # first-party caveats added after services=ep212:0
    drop_paid: bool = False  # abort the connection of any request carrying a credential
    payload_bytes: int = 0  # padding added to the paid answer (a big body)
    hang: bool = False  # never answer (the seller's `hanging` event is set instead)


@dataclass
class Seller:
    """An L402 seller minting its own invoices and tokens, counting what happens."""

    routes: dict[str, RouteSpec]
    key: PrivateKey = field(default_factory=PrivateKey)
    preimages: dict[bytes, bytes] = field(default_factory=dict)
    root_keys: dict[bytes, bytes] = field(default_factory=dict)
    used: set[bytes] = field(default_factory=set)
    challenges: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)  # every macaroon handed out (std base64)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def challenge(self, path: str, spec: RouteSpec) -> web.Response:
        self.challenges[path] += 1
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).digest()
        invoice_hash = secrets.token_bytes(32) if spec.wrong_hash else payment_hash
        self.preimages[invoice_hash] = preimage
        root_key = secrets.token_bytes(32)
        self.root_keys[payment_hash] = root_key
        macaroon = mint_macaroon(root_key, payment_hash, ("services=ep212:0", *spec.caveats))
        self.minted.append(macaroon)
        invoice = make_invoice(self.key, spec.price_msats, invoice_hash, network=spec.network)
        amount = f'amount_msats="{spec.price_msats}"'
        if spec.style == "gateway":
            return web.json_response(
                wire.body(
                    path, spec.price_msats, invoice, macaroon, payment_hash.hex(),
                    int(time.time()) + 3600,
                ),
                status=402,
                headers=[*wire.headers(macaroon, invoice, spec.price_msats),
                         ("Cache-Control", "no-store")],
            )  # fmt: skip
        if spec.style == "no_invoice":  # malformed: the challenge names no invoice
            return web.json_response(
                {"error": "payment_required", "macaroon": macaroon},
                status=402,
                headers={"WWW-Authenticate": f'L402 macaroon="{macaroon}"'},
            )
        if spec.style == "token":
            values = [f'L402 version="0", token="{macaroon}", invoice="{invoice}", {amount}']
        else:
            values = [
                f'LSAT macaroon="{macaroon}", invoice="{invoice}"',
                f'L402 macaroon="{macaroon}", invoice="{invoice}", {amount}',
            ]
        headers = [("WWW-Authenticate", v) for v in values]
        headers.append(("Cache-Control", "no-store"))
        return web.Response(status=402, text="payment required\n", headers=headers)

    def verify(self, authorization: str, per_request: bool) -> bool:
        match = _AUTH.fullmatch(authorization)
        if match is None:
            return False
        mac = Macaroon.deserialize(match.group(1))
        payment_hash = mac.identifier_bytes[2:34]
        preimage = bytes.fromhex(match.group(2))
        root_key = self.root_keys.get(payment_hash)
        if root_key is None or hashlib.sha256(preimage).digest() != payment_hash:
            return False
        verifier = Verifier()
        verifier.satisfy_general(
            lambda caveat: caveat.startswith("services=") or "_valid_until=" in caveat
        )
        if not verifier.verify(mac, root_key):
            return False
        if per_request:
            if payment_hash in self.used:
                return False
            self.used.add(payment_hash)
        return True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        spec = self.routes.get(path)
        if spec is None:
            return web.json_response({"free": True, "path": path})
        self.bodies.append(await request.read())
        if spec.hang:
            self.hanging.set()
            await asyncio.Event().wait()  # until the client goes away or the server stops
        authorization = request.headers.get("Authorization")
        if authorization is not None and spec.drop_paid:
            self.refused[path] += 1
            assert request.transport is not None
            request.transport.abort()  # the buyer sees the connection drop, no answer
            return web.Response(status=500)
        if authorization is not None:
            ok = spec.mode != "always_402" and self.verify(
                authorization, spec.mode == "per_request"
            )
            if ok:
                self.served[path] += 1
                payload: dict[str, Any] = {
                    "ok": True, "source": "openagents.ep212", "route": path, "signals": [1, 2]
                }  # fmt: skip
                if spec.payload_bytes:
                    payload["pad"] = "x" * spec.payload_bytes
                return web.json_response(payload)
            self.refused[path] += 1
            if spec.reject_status == 401:
                return web.Response(status=401, text="invalid credential\n")
        return self.challenge(path, spec)


class FakePayer:
    """Pays by asking the seller for the preimage; counts and records every call."""

    def __init__(self, seller: Seller, *, fail: Exception | None = None) -> None:
        self.seller = seller
        self.fail = fail
        self.calls = 0
        self.requests: list[dict[str, Any]] = []

    async def pay(
        self, invoice: str, max_amount_msats: int, host: str, request_id: str
    ) -> PaymentReceipt:
        self.calls += 1
        self.requests.append(
            {"invoice": invoice, "max": max_amount_msats, "host": host, "requestId": request_id}
        )
        if self.fail is not None:
            raise self.fail
        decoded = bolt11.decode(invoice)
        payment_hash = bytes.fromhex(decoded.payment_hash)
        preimage = self.seller.preimages[payment_hash]
        return PaymentReceipt(
            payment_id=payment_hash.hex(),
            amount_msats=int(decoded.amount_msat or 0),
            preimage_hex=preimage.hex(),
            paid_at_ms=int(time.time() * 1000),
        )


@dataclass
class Executor:
    """The EP212 wallet executor's HTTP contract, backed by a Seller's preimages."""

    seller: Seller
    token: str = "executor-test-token"
    mode: str = "ok"  # ok | hang | error | bad_preimage | bad_shape | not_json | overpay
    received: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/pay-bolt11", self.pay)
        app.router.add_get("/status", self.status)
        return app

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        self.auth_headers.append(header)
        return header == f"Bearer {self.token}"

    async def status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"code": "unauthorized"}}, status=401)
        return web.json_response({"ready": True, "balanceSats": 5000, "lifecycle": "connected"})

    async def pay(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"error": {"code": "unauthorized", "message": "bad token"}}, status=401
            )
        body = json.loads(await request.read())
        self.received.append(body)
        if self.mode == "hang":
            await self.never.wait()
        if self.mode == "error":
            return web.json_response(
                {"error": {"code": "insufficient_balance", "message": "balance too low"}},
                status=502,
            )
        if self.mode == "not_json":
            return web.Response(text="paid, probably")
        if self.mode == "bad_shape":
            return web.json_response({"result": {"paid": True}})
        decoded = bolt11.decode(body["payment"]["invoice"])
        payment_hash = bytes.fromhex(decoded.payment_hash)
        preimage = self.seller.preimages[payment_hash].hex()
        if self.mode == "bad_preimage":
            preimage = secrets.token_hex(32)
        amount = int(decoded.amount_msat or 0)
        if self.mode == "overpay":
            amount = body["payment"]["maxAmountMsats"] + 1
        payment = {
            "paymentId": f"spark-{payment_hash.hex()[:12]}",
            "amountMsats": amount,
            "preimageHex": preimage,
            "paidAtMs": 1_771_000_000_000,
        }
        return web.json_response({"result": {"payment": payment}})
