"""The LND payer's settings are required and named; an unreachable node is "nothing was sent".

`l402-buyer` used to fall back to 127.0.0.1:10009 without saying so, and to
report a payment that never left as one that "may have cost up to" the
invoice plus the fee limit. Here the node is a real gRPC client dialling a
closed port on 127.0.0.1 (connection refused), behind a real 402 seller.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from gateway.buyer.errors import PaymentError, SettingsError
from gateway.buyer.payers import LndPayer
from gateway.buyer.settings import PayerSettings
from gateway.lightning.errors import BackendUnavailable
from gateway.lightning.lnd import LndClient
from gateway.lightning.types import Payment, WalletState

from .cliproc import base_env, run_cli
from .fakes import Seller
from .test_buyer_payers import FakeLnd, _lnd_case

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # any PEM: the dial fails before TLS
HOST, CERT, MACAROON = "L402_BUYER_LND_HOST", "L402_BUYER_LND_TLS_CERT", "L402_BUYER_LND_MACAROON"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but never listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def lnd_env(**values: str) -> dict[str, str]:
    """All three LND payer settings, with `values` replacing them ("" leaves one out)."""
    env = {HOST: "127.0.0.1:10009", CERT: "/n/tls.cert", MACAROON: "/n/admin.macaroon", **values}
    return {name: value for name, value in env.items() if value}


def test_the_node_address_has_no_default() -> None:
    with pytest.raises(SettingsError) as info:
        PayerSettings.from_env(lnd_env(L402_BUYER_LND_HOST=""))
    assert (info.value.code, info.value.message) == (
        "missing_setting",
        "LND payer: L402_BUYER_LND_HOST is not set (host:port of the paying node's gRPC"
        " interface, e.g. 127.0.0.1:10009)",
    )


def test_every_missing_setting_is_named() -> None:
    with pytest.raises(SettingsError) as info:
        PayerSettings.from_env(lnd_env(L402_BUYER_LND_TLS_CERT="", L402_BUYER_LND_MACAROON=""))
    assert info.value.message == (
        "LND payer: L402_BUYER_LND_TLS_CERT is not set (path to that node's tls.cert);"
        " L402_BUYER_LND_MACAROON is not set (path to a macaroon that may pay, e.g."
        " admin.macaroon)"
    )
    with pytest.raises(SettingsError) as info:
        PayerSettings.from_env({})
    assert info.value.message == (
        "no payer: set OA_LIGHTNING_WALLET_EXECUTOR_BASE_URL (the wallet executor) or the LND"
        " payer's L402_BUYER_LND_HOST, L402_BUYER_LND_TLS_CERT and L402_BUYER_LND_MACAROON"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "node.example:x", "node.example:0", "h:70000"])
def test_a_host_without_a_port_is_refused(host: str) -> None:
    with pytest.raises(SettingsError) as info:
        PayerSettings.from_env(lnd_env(L402_BUYER_LND_HOST=host))
    assert (info.value.code, info.value.message) == (
        "invalid_setting",
        "L402_BUYER_LND_HOST must be host:port (e.g. 127.0.0.1:10009)",
    )


def test_the_settings_given_are_the_settings_used() -> None:
    settings = PayerSettings.from_env(lnd_env(L402_BUYER_LND_HOST="[::1]:10010"))
    assert settings.lnd is not None
    assert (settings.lnd.host, str(settings.lnd.tls_cert)) == ("[::1]:10010", "/n/tls.cert")


async def test_an_unreachable_node_was_never_asked_to_pay(closed_port: int) -> None:
    invoice, _, _ = _lnd_case()
    client = LndClient.connect(
        f"127.0.0.1:{closed_port}", tls_cert=CA_BUNDLE, macaroon=None, timeout=5
    )
    try:
        payer = LndPayer(client, node=f"LND at 127.0.0.1:{closed_port}")
        with pytest.raises(PaymentError) as info:
            await payer.pay(invoice, 100_000, "h", "r")
    finally:
        await client.close()
    assert info.value.code == "lnd_unreachable"
    assert info.value.message == (
        f"could not reach LND at 127.0.0.1:{closed_port} (gRPC UNAVAILABLE); no payment was"
        " attempted"
    )
    assert info.value.spent_msats is None


@pytest.mark.parametrize(
    ("state", "code"),
    [(WalletState.LOCKED, "lnd_not_ready"), (BackendUnavailable("GetState", "UNAVAILABLE", "x"),
                                              "lnd_unreachable")],
)  # fmt: skip
async def test_no_send_without_a_ready_node(state: WalletState | Exception, code: str) -> None:
    invoice, preimage, payment_hash = _lnd_case()
    lnd = FakeLnd(Payment(payment_hash, preimage, 10_000, 0), state=state)
    with pytest.raises(PaymentError) as info:
        await LndPayer(lnd).pay(invoice, 100_000, "h", "r")
    assert (info.value.code, info.value.spent_msats, lnd.calls) == (code, None, [])


async def test_a_stream_lost_while_paying_is_an_unknown_outcome() -> None:
    invoice, _, _ = _lnd_case()
    lnd = FakeLnd(BackendUnavailable("SendPaymentV2", "UNAVAILABLE", "reset"))
    with pytest.raises(PaymentError) as info:
        await LndPayer(lnd, fee_limit_msat=5_000).pay(invoice, 100_000, "h", "r")
    assert info.value.spent_msats == 15_000  # amount + fee limit: it may be in flight
    assert "the outcome is unknown" in info.value.message


async def test_fetch_says_nothing_was_paid_when_the_node_is_unreachable(
    seller_server: tuple[Seller, TestServer], closed_port: int, tmp_path: Path
) -> None:
    _, server = seller_server
    url = str(server.make_url("/ep212/premium-signal"))
    env = base_env(
        XDG_CACHE_HOME=str(tmp_path),
        L402_BUYER_LND_HOST=f"127.0.0.1:{closed_port}",
        L402_BUYER_LND_TLS_CERT=str(CA_BUNDLE),
        L402_BUYER_LND_MACAROON=str(CA_BUNDLE),  # any readable file: never sent
    )
    text = await run_cli(["fetch", url, "--max-msats", "50000"], env)
    assert text.code == 1
    assert "lnd_unreachable: could not reach LND at 127.0.0.1:" in text.err
    assert "no payment was attempted" in text.err
    assert "may have cost" not in text.err
    report = await run_cli(["fetch", url, "--max-msats", "50000", "--json"], env)
    body = json.loads(report.out)
    assert (body["errorCode"], body["spentMsats"], body["paid"]) == ("lnd_unreachable", None, False)


async def test_fetch_names_the_missing_node_address(
    seller_server: tuple[Seller, TestServer], tmp_path: Path
) -> None:
    _, server = seller_server
    env = base_env(
        XDG_CACHE_HOME=str(tmp_path),
        L402_BUYER_LND_TLS_CERT=str(CA_BUNDLE),
        L402_BUYER_LND_MACAROON=str(CA_BUNDLE),
    )
    ran = await run_cli(["fetch", str(server.make_url("/x")), "--max-msats", "1"], env)
    assert ran.code == 1
    assert ran.err == (
        "l402-buyer: fetch failed: missing_setting: LND payer: L402_BUYER_LND_HOST is not set"
        " (host:port of the paying node's gRPC interface, e.g. 127.0.0.1:10009)\n"
    )
