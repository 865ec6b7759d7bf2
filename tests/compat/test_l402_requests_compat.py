"""l402-requests 0.9.0 (PyPI) against the real gateway, paying on the real regtest network.

- With a custom wallet (its documented `WalletBase` extension point) that pays with
  the regtest buyer LND over gRPC, both its async and sync clients get the EP212
  payload and reuse the token.
- Its built-in `LndWallet` (LND REST) base64-decodes LND's hex preimage and sends
  96 hex characters; the gateway recovers the real preimage from that exact
  mangling (the payment is still proven by its hash). Any other 96-hex value is
  refused with 401 `malformed` and a message that names the length.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from pathlib import Path

import httpx
import pytest
from l402_requests import AsyncL402Client, BudgetController, L402Client
from l402_requests.credential_cache import L402Credential
from l402_requests.wallets import LndWallet, WalletBase

from gateway.buyer.invoice import inspect_macaroon
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.rehearsal.stack import ROUTE_A_PATH, SellerStack
from tests.compat.lnd_rest import LndRestRouter

pytestmark = [pytest.mark.regtest]

ROUTE_A = "ep212-premium-signal"
AUTH_FORM = re.compile(r"L402 (?P<mac>[A-Za-z0-9+/]+={0,2}):(?P<pre>[0-9a-f]+)")


class RegtestLndWallet(WalletBase):  # type: ignore[misc]  # l402_requests is untyped
    """Pays with the regtest buyer LND over gRPC; one connection per payment.

    Connecting inside `pay_invoice` keeps the gRPC channel on the event loop that
    runs it: the async client's loop, or the private loop `pay_invoice_sync` starts.
    """

    def __init__(self, desc: Descriptor) -> None:
        self._desc = desc
        self.preimages: list[str] = []

    async def pay_invoice(self, bolt11: str) -> str:
        node = self._desc.buyer
        async with LndClient.connect(
            node.rpc, tls_cert=Path(node.tls_cert), macaroon=Path(node.admin_macaroon)
        ) as lnd:
            payment = await lnd.pay_invoice(bolt11, fee_limit_msat=10_000, timeout_seconds=30)
        self.preimages.append(payment.preimage.hex())
        return payment.preimage.hex()


def _budget() -> BudgetController:
    return BudgetController(max_sats_per_request=100, allowed_domains={"127.0.0.1"})


def _metric(seller: SellerStack, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return seller.metrics().get(f"{name}{{{inner}}}", 0.0)


def _check_payload(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["ok"] is True
    assert payload["source"] == "openagents.ep212"


async def test_challenge_is_what_l402_requests_parses(seller: SellerStack) -> None:
    """The unauthenticated answer carries LSAT and L402 challenges the client can read."""
    async with httpx.AsyncClient() as http:
        response = await http.get(seller.public_url + ROUTE_A_PATH)
    assert response.status_code == 402
    schemes = [v.split(" ", 1)[0] for v in response.headers.get_list("www-authenticate")]
    # Route A also sells the Payment scheme: its two intents come after LSAT and L402, and
    # the client (the rest of this module) still finds what it reads.
    assert schemes == ["LSAT", "L402", "Payment", "Payment"]
    from l402_requests.client import _select_challenge

    challenge = _select_challenge(response)
    assert challenge is not None
    assert challenge.invoice.startswith("lnbcrt100n1")


async def test_async_client_with_regtest_wallet(seller: SellerStack, regtest: Descriptor) -> None:
    wallet = RegtestLndWallet(regtest)
    url = seller.public_url + ROUTE_A_PATH
    async with AsyncL402Client(wallet=wallet, budget=_budget()) as client:
        first = await client.get(url)
        _check_payload(first)
        sent = AUTH_FORM.fullmatch(first.request.headers["authorization"])
        assert sent is not None, first.request.headers["authorization"]
        assert sent["pre"] == wallet.preimages[0]
        assert len(sent["pre"]) == 64

        second = await client.get(url)  # reusable token from the client's own cache
        _check_payload(second)
        assert second.request.headers["authorization"] == first.request.headers["authorization"]

    assert len(wallet.preimages) == 1
    assert client.spending_log.total_spent() == 10
    assert _metric(seller, "l402_paid_requests_total", route=ROUTE_A) == 2
    assert _metric(seller, "l402_challenges_issued_total", route=ROUTE_A) == 1
    assert not any(k.startswith("l402_auth_failures_total") for k in seller.metrics())


async def test_sync_client_with_regtest_wallet(seller: SellerStack, regtest: Descriptor) -> None:
    wallet = RegtestLndWallet(regtest)
    url = seller.public_url + ROUTE_A_PATH

    def run() -> list[httpx.Response]:
        client = L402Client(wallet=wallet, budget=_budget())
        return [client.get(url), client.get(url)]

    first, second = await asyncio.to_thread(run)
    _check_payload(first)
    _check_payload(second)
    assert len(wallet.preimages) == 1
    assert second.request.headers["authorization"].endswith(":" + wallet.preimages[0])
    assert _metric(seller, "l402_paid_requests_total", route=ROUTE_A) == 2


async def test_builtin_lnd_wallet_96_hex_preimage_is_recovered(
    seller: SellerStack, buyer_rest: LndRestRouter, buyer_macaroon_hex: str
) -> None:
    """The client's own LND wallet over LND REST pays, then sends a 96-hex preimage.

    The gateway recovers the real preimage from that known mangling (and still
    proves it against the payment hash), so the buyer does not lose what it paid for.
    """
    wallet = LndWallet(host=buyer_rest.url, macaroon_hex=buyer_macaroon_hex)
    url = seller.public_url + ROUTE_A_PATH
    async with AsyncL402Client(wallet=wallet, budget=_budget()) as client:
        response = await client.get(url)
        assert buyer_rest.calls == 1
        assert client.spending_log.total_spent() == 10  # the client did pay

        # The client's own header: `L402 <macaroon>:<96 hex>`.
        sent = AUTH_FORM.fullmatch(response.request.headers["authorization"])
        assert sent is not None, response.request.headers["authorization"]
        assert len(sent["pre"]) == 96
        # Why: LND REST returned the 64-hex preimage and the client base64-decoded it.
        real = base64.b64encode(bytes.fromhex(sent["pre"])).decode()
        assert re.fullmatch(r"[0-9a-f]{64}", real)
        paid_hash = inspect_macaroon(sent["mac"]).payment_hash
        assert hashlib.sha256(bytes.fromhex(real)).digest() == paid_hash

        _check_payload(response)
        again = await client.get(url)  # its cached credential, same mangled form
        _check_payload(again)
        assert again.request.headers["authorization"] == response.request.headers["authorization"]
        assert buyer_rest.calls == 1
    assert _metric(seller, "l402_paid_requests_total", route=ROUTE_A) == 2
    assert _metric(seller, "l402_auth_failures_total", reason="malformed", route=ROUTE_A) == 0


async def test_96_hex_refusal_names_the_preimage_length(seller: SellerStack) -> None:
    """A 96-hex preimage that is not the known mangling is refused, and the refusal says why.

    The length check comes before any token lookup, so a challenge macaroon and
    random 96 hex characters are enough; the header is made by the client's own
    credential class.
    """
    url = seller.public_url + ROUTE_A_PATH
    async with httpx.AsyncClient() as http:
        challenge = await http.get(url)
        assert challenge.status_code == 402
        macaroon = challenge.json()["macaroon"]
        preimage_96 = secrets.token_bytes(48).hex()  # re-encodes to non-hex: not the mangling
        header = L402Credential(macaroon=macaroon, preimage=preimage_96).authorization_header
        response = await http.get(url, headers={"Authorization": header})
    assert len(preimage_96) == 96
    assert response.status_code == 402, response.text  # the default: Aperture's status
    body = response.json()
    assert (body["error"], body["reason"]) == ("invalid_credential", "malformed")
    assert "96" in body.get("message", ""), (
        "the refusal names no length: a client cannot tell its 96-hex preimage is the problem; "
        f"body keys: {sorted(body)}"
    )
