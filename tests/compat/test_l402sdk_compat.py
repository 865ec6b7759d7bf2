"""l402sdk 0.1.0 (PyPI; Rust core, module `l402`) against the real gateway on regtest.

It runs in a subprocess (its Rust core holds the GIL). Over LND REST it pays with
the regtest buyer and gets the EP212 payload, then reuses its cached token. Over
LND gRPC it cannot connect at all: its rustls client refuses LND's self-signed
`tls.cert` (CA:TRUE used as the server's own certificate).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.regtest.network import Descriptor
from gateway.rehearsal.stack import ROUTE_A_PATH, SellerStack
from tests.compat.lnd_rest import LndRestRouter

pytestmark = [pytest.mark.regtest]

ROUTE_A = "ep212-premium-signal"
RUNNER = Path(__file__).with_name("l402sdk_runner.py")


async def _run(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_l402sdk_pays_over_lnd_rest_and_reuses_the_token(
    seller: SellerStack, buyer_rest: LndRestRouter, buyer_macaroon_hex: str
) -> None:
    result = await _run(
        "rest", buyer_rest.url, buyer_macaroon_hex, seller.public_url + ROUTE_A_PATH
    )
    first, second = result["first"], result["second"]

    assert first["status"] == 200, first
    assert first["paid"] is True
    assert first["json"]["source"] == "openagents.ep212"
    receipt = first["receipt"]
    assert receipt["amount_sats"] == 10
    preimage = bytes.fromhex(receipt["preimage"])
    assert hashlib.sha256(preimage).hexdigest() == receipt["payment_hash"]

    assert second["status"] == 200, second
    assert second["paid"] is False
    assert second["cached_token"] is True
    assert second["json"]["source"] == "openagents.ep212"

    assert buyer_rest.calls == 1
    assert result["total_spent"] == 10
    metrics = seller.metrics()
    assert metrics[f'l402_paid_requests_total{{route="{ROUTE_A}"}}'] == 2
    assert metrics[f'l402_challenges_issued_total{{route="{ROUTE_A}"}}'] == 1
    assert not any(k.startswith("l402_auth_failures_total") for k in metrics)


async def test_l402sdk_lnd_grpc_refuses_lnd_self_signed_cert(regtest: Descriptor) -> None:
    """Documents the blocker; if a release fixes it, turn this into a paying test."""
    buyer = regtest.buyer
    result = await _run("grpc", "https://" + buyer.rpc, buyer.tls_cert, buyer.admin_macaroon)
    assert result == {
        "ok": False,
        "error_type": "RuntimeError",
        "error": "failed to connect to LND gRPC: LND transport error: transport error",
    }
