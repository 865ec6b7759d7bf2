"""No Payment-scheme secret reaches the log at DEBUG: preimages, credentials, return invoices.

A real gateway logs as `l402-gateway serve --log-level debug --log-file` does
while a buyer on regtest buys a charge and runs a session (open, bearer,
close, whose refund pays the return invoice). Every preimage, every
`Authorization: Payment` value and the return invoice (it identifies the
buyer's node) are then hunted in the log file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.config import load_config
from gateway.lightning.lnd import LndClient
from gateway.observability import logsetup as logs
from gateway.payment import wwwauth
from gateway.payment.challenge import ChallengeParams
from gateway.payment.credential import Credential, format_authorization
from gateway.payment.payloads import BearerPayload, ClosePayload, OpenPayload
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.logs.support import decoded_text, leaks, read_log

pytestmark = pytest.mark.regtest


async def _offers(http: aiohttp.ClientSession, url: str) -> dict[str, ChallengeParams]:
    async with http.get(url) as resp:
        assert resp.status == 402
        return {
            o.intent: o for o in wwwauth.parse_challenges(resp.headers.getall("WWW-Authenticate"))
        }


async def _pay(lnd: LndClient, offer: ChallengeParams, field: str) -> bytes:
    request = offer.request_object()
    details = request.get("methodDetails")
    invoice = details["invoice"] if isinstance(details, dict) else request[field]
    return (await lnd.pay_invoice(str(invoice), fee_limit_msat=10_000)).preimage


async def test_debug_logs_of_payment_flows_carry_no_secret(
    tmp_path: Path, regtest: Descriptor, buyer_admin: LndClient
) -> None:
    document = {
        "listen": {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"},
        "lightning": {"host": regtest.seller.rpc, "tls_cert": regtest.seller.tls_cert,
                      "macaroon": regtest.seller.invoice_macaroon,
                      "refund_macaroon": regtest.seller.payer_macaroon},
        "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
        "payment": {"sessions": {"enabled": True, "deposit_multiplier": 3}},
        "routes": [{"name": "paid", "path": "^/paid$", "upstream": "http://127.0.0.1:9/",
                    "price_sats": 5, "schemes": ["payment"]}],
    }  # fmt: skip
    config = tmp_path / "routes.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    log_path = tmp_path / "gateway.log"
    logs.configure("debug", log_file=log_path)
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    server = GatewayServer(load_config(config))
    await server.start()
    url = f"http://127.0.0.1:{server.public_port}/paid"
    try:
        async with aiohttp.ClientSession() as http:
            offers = await _offers(http, url)
            charge_preimage = await _pay(buyer_admin, offers["charge"], "charge")
            charge = format_authorization(
                Credential(offers["charge"], {"preimage": charge_preimage.hex()})
            )
            async with http.get(url, headers={"Authorization": charge}) as resp:
                await resp.read()
                assert resp.status == 502  # paid, and the upstream is down: given back
            deposit = offers["session"]
            session_preimage = await _pay(buyer_admin, deposit, "depositInvoice")
            returned = await buyer_admin.add_invoice(0, "refund", 30 * 86_400)
            session_id = bytes.fromhex(str(deposit.request_object()["paymentHash"]))
            actions = [
                format_authorization(Credential(deposit, OpenPayload(
                    session_preimage, returned.payment_request).to_json())),
                format_authorization(Credential(deposit, BearerPayload(
                    session_id, session_preimage).to_json())),
                format_authorization(Credential(deposit, ClosePayload(
                    session_id, session_preimage).to_json())),
            ]  # fmt: skip
            statuses = []
            for header in actions:
                async with http.get(url, headers={"Authorization": header}) as resp:
                    await resp.read()
                    statuses.append(resp.status)
            assert statuses == [200, 502, 200]  # open, bearer (upstream down), close
    finally:
        await server.stop()
        logs.unconfigure()
    hunted = {
        "charge preimage": charge_preimage.hex(),
        "charge credential": charge.split(" ", 1)[1],
        "session preimage": session_preimage.hex(),
        **{f"session credential {i}": h.split(" ", 1)[1] for i, h in enumerate(actions)},
        "return invoice": returned.payment_request,
    }
    text, lines = read_log(log_path)
    assert any(line.get("outcome") == "session_close" for line in lines)  # the flow was logged
    assert leaks(text, hunted) == []
    assert leaks(decoded_text(lines), hunted) == []
