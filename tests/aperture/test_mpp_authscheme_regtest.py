"""What a service's `authscheme` does in the real Aperture v0.5.0 with `enablempp` on, on
regtest, and that `convert-aperture` turns the same aperture.yaml into routes selling what
Aperture really accepted (gateway.aperture.payment).

Three services at one price: no `authscheme`, `authscheme: mpp`, `authscheme: l402`. Each
402 carries L402 and Payment challenges whatever the service says; a paid L402 token and a
paid Payment charge are then presented to each (an accepted one is forwarded to the demo
upstream, which answers 404 for these paths: a 404 is "accepted", a 402 "refused").
Observed: the service without authscheme accepts both (an empty scheme tries every
authenticator, although Aperture's comment calls the empty value "l402"), `mpp` only the
charge, `l402` only the token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.aperture.convert import convert
from gateway.buyer.challenge import parse_challenge
from gateway.lightning.lnd import LndClient
from gateway.payment import wwwauth
from gateway.payment.credential import Credential, format_authorization
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import pid_alive
from tests.aperture.mpp_harness import MppApertureProcess
from tests.support.aperture import ApertureService

pytestmark = pytest.mark.regtest
PRICE = 5
PATHS = {"unmarked": "/unmarked", "mpponly": "/mpp", "l402only": "/l402"}
SCHEMES = {"unmarked": None, "mpponly": "mpp", "l402only": "l402"}


@pytest.fixture
async def schemes_aperture(
    aperture_binary: Path, regtest: Descriptor, signal_upstream: str
) -> AsyncIterator[MppApertureProcess]:
    services = [
        ApertureService(name, signal_upstream, f"^{path}$", PRICE, timeout=3600,
                        extra={} if SCHEMES[name] is None else {"authscheme": SCHEMES[name]})
        for name, path in PATHS.items()
    ]  # fmt: skip
    process = MppApertureProcess(aperture_binary, regtest.seller, services, sessions=False)
    process.spawn()
    await asyncio.to_thread(process.wait_ready)
    yield process
    pid = process.pid
    await asyncio.to_thread(process.remove)
    assert not pid_alive(pid)


async def credentials(
    session: aiohttp.ClientSession, buyer: LndClient, url: str
) -> tuple[list[str], str, str]:
    """(the 402's schemes, a paid L402 credential, a paid Payment charge credential)."""
    async with session.get(url) as resp:
        assert resp.status == 402
        values = resp.headers.getall("WWW-Authenticate")
    l402 = parse_challenge(values)
    paid = await buyer.pay_invoice(l402.invoice, fee_limit_msat=10_000)
    token = f"L402 {l402.macaroon}:{paid.preimage.hex()}"
    charge = next(o for o in wwwauth.parse_challenges(values) if o.intent == "charge")
    details = charge.request_object()["methodDetails"]
    assert isinstance(details, dict)
    paid = await buyer.pay_invoice(str(details["invoice"]), fee_limit_msat=10_000)
    payment = format_authorization(Credential(charge, {"preimage": paid.preimage.hex()}))
    return [v.split(" ", 1)[0] for v in values], token, payment


async def test_authscheme_filters_credentials_and_the_conversion_follows(
    schemes_aperture: MppApertureProcess,
    buyer_admin: LndClient,
    buyer_session: aiohttp.ClientSession,
) -> None:
    accepted: dict[str, set[str]] = {}
    for name, path in PATHS.items():
        url = schemes_aperture.url + path
        offered, token, payment = await credentials(buyer_session, buyer_admin, url)
        assert offered == ["LSAT", "L402", "Payment"], name  # whatever authscheme says
        accepted[name] = set()
        for scheme, authorization in (("l402", token), ("payment", payment)):
            async with buyer_session.get(url, headers={"Authorization": authorization}) as r:
                await r.read()
                # Accepted: forwarded to the demo upstream, which has no such path (404).
                assert r.status in (404, 402), (name, scheme, r.status)
                if r.status == 404:
                    accepted[name].add(scheme)
    assert accepted == {
        "unmarked": {"l402", "payment"},
        "mpponly": {"payment"},
        "l402only": {"l402"},
    }

    conversion = convert(yaml.safe_load(schemes_aperture.config_path.read_text()))
    routes = conversion.document.routes
    converted: dict[str, set[str]] = {}
    for route in routes:
        schemes = route.fields.get("schemes", ["l402"])
        assert isinstance(schemes, list)
        converted[route.name] = {str(s) for s in schemes}
    assert converted == accepted
