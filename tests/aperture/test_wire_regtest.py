"""What the real Aperture v0.5.0 does, observed on regtest, beside what this gateway does.

These are the facts docs/compatibility.md and docs/migrating-from-aperture.md
state: which credential spellings Aperture refuses that we accept, what a
plain (non-gRPC) HTTP/2 request gets from each, and what happens to a token
revoked in Aperture after its key was imported here.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from gateway.cli import main
from gateway.config import load_config
from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.server.serve import GatewayServer
from tests.aperture.admin import AdminAperture
from tests.aperture.conftest import (
    PREMIUM_PATH,
    Buy,
    Purchase,
    StartAperture,
    convert_for_test,
)
from tests.aperture.observed import PLAIN_HTTP2, SPELLINGS
from tests.grpc.h2client import RawH2Client
from tests.support.aperture import ApertureProcess, ApertureService

pytestmark = pytest.mark.regtest


def spellings(purchase: Purchase) -> dict[str, list[tuple[str, str]]]:
    """One credential, written every way a client may send it (headers in order);
    the names are those of tests/aperture/observed.py."""
    mac, pre = purchase.macaroon, purchase.preimage_hex
    with_preimage = macaroons.encode_hex(
        macaroons.add_caveat(macaroons.decode(mac), f"preimage={pre}")
    )
    auth = "Authorization"
    return {
        "L402 mac:pre": [(auth, f"L402 {mac}:{pre}")],
        "LSAT mac:pre": [(auth, f"LSAT {mac}:{pre}")],
        "Grpc-Metadata-Macaroon": [("Grpc-Metadata-Macaroon", with_preimage)],
        "upper-case preimage hex": [(auth, f"L402 {mac}:{pre.upper()}")],
        'macaroon="", preimage=""': [(auth, f'L402 macaroon="{mac}", preimage="{pre}"')],
        "Token (bLIP-26)": [("Token", with_preimage)],
        "Grpc-Metadata-Token": [("Grpc-Metadata-Token", with_preimage)],
        "lower-case l402 scheme": [(auth, f"l402 {mac}:{pre}")],
        "L402 then a Bearer Authorization": [(auth, f"L402 {mac}:{pre}"), (auth, "Bearer x")],
    }


async def statuses(session: aiohttp.ClientSession, url: str, purchase: Purchase) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, headers in spellings(purchase).items():
        async with session.get(url, headers=CIMultiDict(headers)) as response:
            await response.read()
            out[name] = response.status
    return out


async def imported(aperture: ApertureProcess, routes: Path, *extra: str) -> int:
    """import-aperture from Aperture's SQLite file (in a thread: it runs its own loop)."""
    argv = ["import-aperture", "--from", f"sqlite:{aperture.sqlite_path}", "--config"]
    return await asyncio.to_thread(main, [*argv, str(routes), *extra])


async def test_credential_spellings(
    aperture: ApertureProcess,
    buy_with_our_buyer: Buy,
    buyer_session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Aperture v0.5.0 takes `(LSAT|L402) <b64>:<64 lower-case hex>` in Authorization and a
    hex macaroon with a preimage caveat in Grpc-Metadata-Macaroon/Macaroon; every other
    spelling below gets its 402. This gateway accepts them all (our extensions)."""
    purchase = await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
    theirs = await statuses(buyer_session, aperture.url + PREMIUM_PATH, purchase)
    assert theirs == {name: seen.aperture_status for name, seen in SPELLINGS.items()}
    await asyncio.to_thread(aperture.stop)
    routes = convert_for_test(aperture, tmp_path)
    code = await imported(aperture, routes)
    assert code == 0, capsys.readouterr().err
    ours = GatewayServer(load_config(routes))
    await ours.start()
    try:
        url = f"http://127.0.0.1:{ours.public_port}{PREMIUM_PATH}"
        mine = await statuses(buyer_session, url, purchase)
    finally:
        await ours.stop()
    assert mine == dict.fromkeys(spellings(purchase), 200)


async def h2_get(port: int, path: str) -> tuple[int, list[bytes], bytes]:
    """A plain HTTP/2 GET (prior knowledge, no gRPC content type): status, challenges, body."""
    client = await RawH2Client.connect(port)
    try:
        sid = client.request(
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", f"127.0.0.1:{port}"),
                (":path", path),
            ]
        )
        response = await client.response(sid)
    finally:
        await client.close()
    status = response.header(b":status")
    assert status is not None
    return int(status), response.all(b"www-authenticate"), bytes(response.data)


async def test_plain_http2_is_served_by_aperture_and_refused_here(
    aperture: ApertureProcess, tmp_path: Path
) -> None:
    """Aperture serves any h2c request like HTTP/1.1; this gateway serves HTTP/2 to gRPC only."""
    status, challenges, body = await h2_get(aperture.port, PREMIUM_PATH)
    assert status == PLAIN_HTTP2.aperture_status
    assert (len(challenges), body) == (2, b"payment required\n")
    ours = GatewayServer(load_config(convert_for_test(aperture, tmp_path)))
    await ours.start()
    try:
        status, challenges, body = await h2_get(ours.public_port, PREMIUM_PATH)
    finally:
        await ours.stop()
    assert (status, challenges) == (505, [])
    assert json.loads(body)["error"] == "http2_not_grpc"


async def settled_in_aperture(
    session: aiohttp.ClientSession, aperture: AdminAperture, token_id: str
) -> None:
    """Until Aperture's admin API lists the token as settled (it follows LND's settlements).

    Its REST gateway answers 503 until its own gRPC client has (re)connected to the
    listener, which was not up yet when the client was made.
    """
    deadline = time.monotonic() + 60
    url = f"{aperture.url}/api/admin/tokens?limit=100"
    while True:
        async with session.get(url, headers=aperture.admin_headers()) as response:
            listed = await response.json()
            assert response.status in (200, 503), listed
        if response.status == 200 and any(t["token_id"] == token_id for t in listed["tokens"]):
            return
        assert time.monotonic() < deadline, f"Aperture never listed the token: {listed}"
        await asyncio.sleep(0.2)  # polling Aperture, bounded by the deadline above


async def test_a_revocation_in_aperture_after_the_import(
    start_aperture: StartAperture,
    aperture_services: list[ApertureService],
    buy_with_our_buyer: Buy,
    buyer_session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not carried over by itself: the key imported earlier still verifies here until a
    re-import with --sync-revocations revokes it (a re-import without it reports it)."""
    aperture = await start_aperture(aperture_services, admin=True)
    assert isinstance(aperture, AdminAperture)
    purchase = await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
    token_id = Identifier.decode(macaroons.decode(purchase.macaroon).identifier).token_id.hex()
    await settled_in_aperture(buyer_session, aperture, token_id)
    # `admin` has no equivalent here (a dropped line); no verified-credential cache, so a
    # revocation written to the store applies to the next request.
    routes = convert_for_test(aperture, tmp_path, complete=False, verified_cache_size=0)
    capsys.readouterr()
    assert await imported(aperture, routes) == 0, capsys.readouterr().err
    headers = {"Authorization": purchase.authorization}
    ours = GatewayServer(load_config(routes))
    await ours.start()
    try:
        url = f"http://127.0.0.1:{ours.public_port}{PREMIUM_PATH}"

        async def status(base: str) -> int:
            async with buyer_session.get(base, headers=headers) as response:
                await response.read()
                return response.status

        assert await status(url) == 200
        revoke = f"{aperture.url}/api/admin/tokens/{token_id}"
        async with buyer_session.delete(revoke, headers=aperture.admin_headers()) as response:
            assert response.status == 200
            assert await response.json() == {"status": "revoked"}
        assert await status(aperture.url + PREMIUM_PATH) == 402  # refused by Aperture now
        assert await status(url) == 200  # still valid here: nothing carried it over

        capsys.readouterr()
        code = await imported(aperture, routes)
        err = capsys.readouterr().err
        assert code == 1
        assert f"revoked in Aperture: token {token_id} " in err
        assert "still valid here" in err
        assert await status(url) == 200

        code = await imported(aperture, routes, "--sync-revocations")
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "revoked in Aperture since imported: 1, revoked here now: 1" in out
        assert await status(url) in (401, 402)  # refused here too
    finally:
        await ours.stop()
