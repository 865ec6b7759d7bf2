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

import aiohttp
import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.server.serve import GatewayServer
from tests.aperture.conftest import EXPENSIVE_PATH, PREMIUM_PATH, Buy, convert_for_test, quote
from tests.support.aperture import ApertureProcess

pytestmark = pytest.mark.regtest


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
