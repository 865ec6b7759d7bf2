"""Cut-over from the real Aperture to this gateway, end to end on regtest.

1. Aperture sells on the regtest seller; our buyer buys a token from it.
2. `convert-aperture` converts Aperture's own aperture.yaml; both gateways run
   side by side and quote the same prices for the same requests.
3. Aperture is stopped; `import-aperture` imports its SQLite database into our
   store; the SAME credential then gets 200 through our gateway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.buyer import decode_invoice, parse_challenge
from gateway.cli import main
from gateway.config import load_config
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.aperture.conftest import EXPENSIVE_PATH, PREMIUM_PATH, Buy
from tests.support.aperture import ApertureProcess

pytestmark = pytest.mark.regtest


def convert_for_test(aperture: ApertureProcess, tmp_path: Path) -> Path:
    """convert-aperture on Aperture's real config, then what an operator edits by hand:
    a free admin port and a store path (tests must not use the defaults)."""
    out = tmp_path / "routes.yaml"
    code = main(["convert-aperture", str(aperture.config_path), "-o", str(out)])
    assert code == 0, "the harness' Aperture config converts completely"
    document: dict[str, Any] = yaml.safe_load(out.read_text())
    assert document["listen"]["public"] == f"127.0.0.1:{aperture.port}"
    document["listen"]["public"] = f"127.0.0.1:{free_port()}"  # Aperture may still run
    document["listen"]["admin"] = f"127.0.0.1:{free_port()}"
    document["store"]["url"] = f"sqlite:///{tmp_path / 'tokens.db'}"
    document["challenge_rate_limit"] = {"per_minute": 0}  # every request comes from 127.0.0.1
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    return out


async def quote(session: aiohttp.ClientSession, url: str) -> tuple[int, int | None]:
    """(status, invoice amount in msat) of an unpaid GET, for either gateway."""
    async with session.get(url) as response:
        await response.read()
        if response.status != 402:
            return response.status, None
        challenge = parse_challenge(response.headers.getall("WWW-Authenticate"))
    return 402, decode_invoice(challenge.invoice).amount_msats


async def test_converted_config_quotes_like_aperture(
    aperture: ApertureProcess, tmp_path: Path, buyer_session: aiohttp.ClientSession
) -> None:
    """Side by side on one LND: the same requests get the same answers and prices."""
    config = load_config(convert_for_test(aperture, tmp_path))
    ours = GatewayServer(config)
    await ours.start()
    try:
        base = f"http://127.0.0.1:{ours.public_port}"
        for path in (PREMIUM_PATH, EXPENSIVE_PATH, "/not-sold-here", PREMIUM_PATH + "/x"):
            theirs = await quote(buyer_session, aperture.url + path)
            mine = await quote(buyer_session, base + path)
            assert mine == theirs, path
        assert (await quote(buyer_session, base + PREMIUM_PATH))[1] == 10_000
        assert (await quote(buyer_session, base + EXPENSIVE_PATH))[1] == 1_000  # price 0
    finally:
        await ours.stop()


async def test_cut_over_keeps_paid_credentials(
    aperture: ApertureProcess,
    tmp_path: Path,
    buy_with_our_buyer: Buy,
    buyer_session: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    premium = await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
    zero = await buy_with_our_buyer(aperture.url + EXPENSIVE_PATH)
    aperture_quotes = (premium.result.quote_msats, zero.result.quote_msats)
    assert aperture_quotes == (10_000, 1_000)
    await asyncio.to_thread(aperture.stop)

    routes = convert_for_test(aperture, tmp_path)
    capsys.readouterr()
    argv = ["import-aperture", "--from", f"sqlite:{aperture.sqlite_path}", "--config", str(routes)]
    code = await asyncio.to_thread(main, argv)  # the command runs its own event loop
    out, err = capsys.readouterr()
    assert "root key(s) in secrets, with l402_transactions" in out
    assert code == 0, err
    assert "conflicts 0, bad rows 0" in out

    ours = GatewayServer(load_config(routes))
    await ours.start()
    try:
        base = f"http://127.0.0.1:{ours.public_port}"
        for purchase, path in ((premium, PREMIUM_PATH), (zero, EXPENSIVE_PATH)):
            headers = {"Authorization": purchase.authorization}
            async with buyer_session.get(base + path, headers=headers) as response:
                body = await response.json()
                assert response.status == 200, body
            assert body["ok"] is True
            assert body["authorizationHeaders"] == 1
        # A fresh challenge quotes what Aperture charged.
        assert (await quote(buyer_session, base + PREMIUM_PATH))[1] == aperture_quotes[0]
        assert (await quote(buyer_session, base + EXPENSIVE_PATH))[1] == aperture_quotes[1]
        # A token of one service does not open the other (services caveat).
        headers = {"Authorization": premium.authorization}
        async with buyer_session.get(base + EXPENSIVE_PATH, headers=headers) as response:
            assert response.status in (401, 402)
    finally:
        await ours.stop()
