"""WebSocket sessions bought with real Lightning payments (seller and buyer LND on regtest)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from tests.gateway.harness import pay
from tests.websocket.harness import Bought, Rig, running_rig

pytestmark = pytest.mark.regtest


@pytest.fixture
async def lnd_rig(regtest: Descriptor, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(tmp_path, regtest) as running:
        yield running


async def buy_on_lnd(rig: Rig, payer: LndClient, path: str) -> Bought:
    with pytest.raises(aiohttp.WSServerHandshakeError) as challenged:
        await rig.connect(path)  # the upgrade itself is challenged, not upgraded
    assert challenged.value.status == 402
    async with rig.session.get(rig.url(path)) as r:
        assert r.status == 402
        challenge = await r.json()
    preimage = await pay(payer, challenge["invoice"])
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == challenge["payment_hash"]
    return Bought(challenge["macaroon"], preimage)


async def test_paid_per_request_session_on_regtest(lnd_rig: Rig, buyer_admin: LndClient) -> None:
    bought = await buy_on_lnd(lnd_rig, buyer_admin, "/once/feed")
    async with lnd_rig.connect("/once/feed", headers=bought.auth) as ws:
        await ws.send_str("paid over lightning")
        assert (await ws.receive()).data == "paid over lightning"
        await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as again:
        await lnd_rig.connect("/once/feed", headers=bought.auth)
    assert again.value.status == 402
    assert await lnd_rig.metric("l402_tokens_consumed_total", route="once") == 1
    assert await lnd_rig.metric("l402_challenges_issued_total", route="once") == 3


async def test_paid_reusable_sessions_on_regtest(lnd_rig: Rig, buyer_admin: LndClient) -> None:
    bought = await buy_on_lnd(lnd_rig, buyer_admin, "/paid/feed")
    for round_ in range(2):
        async with lnd_rig.connect("/paid/feed", headers=bought.auth) as ws:
            await ws.send_bytes(bytes([round_]))
            assert (await ws.receive()).data == bytes([round_])
            await ws.close()
    assert await lnd_rig.metric("l402_paid_requests_total", route="paid") == 2
