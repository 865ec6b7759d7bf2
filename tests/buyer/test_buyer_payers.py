"""Payers: the wallet executor HTTP contract (real app on 127.0.0.1) and the LND payer."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from coincurve import PrivateKey

from gateway.buyer.errors import PaymentError
from gateway.buyer.payers import LndPayer, WalletExecutorPayer, validate_preimage
from gateway.lightning.errors import LndUnavailable, PaymentFailed
from gateway.lightning.types import Payment

from .fakes import Executor, Seller, make_invoice


def _invoice(seller: Seller, amount: int = 10_000) -> tuple[str, bytes]:
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).digest()
    seller.preimages[payment_hash] = preimage
    return make_invoice(seller.key, amount, payment_hash), preimage


def _payer(
    executor_server: tuple[Executor, TestServer],
    session: aiohttp.ClientSession,
    **kw: Any,
) -> WalletExecutorPayer:
    executor, server = executor_server
    kw.setdefault("auth_token", executor.token)
    kw.setdefault("timeout_ms", 5_000)
    return WalletExecutorPayer(str(server.make_url("/")), session=session, **kw)


async def test_executor_contract(
    executor_server: tuple[Executor, TestServer], session: aiohttp.ClientSession
) -> None:
    executor = executor_server[0]
    invoice, preimage = _invoice(executor.seller)
    payer = _payer(executor_server, session)
    receipt = await payer.pay(invoice, 100_000, "l402.example", "run-1-route-a")
    assert executor.received == [
        {
            "requestId": "run-1-route-a",
            "payment": {"invoice": invoice, "maxAmountMsats": 100_000, "host": "l402.example"},
        }
    ]
    assert executor.auth_headers == [f"Bearer {executor.token}"]
    assert receipt.preimage_hex == preimage.hex()
    assert receipt.amount_msats == 10_000
    assert receipt.paid_at_ms == 1_771_000_000_000
    assert receipt.payment_id.startswith("spark-")
    assert receipt.proof_reference == f"preimage:{preimage.hex()[:16]}"
    assert payer.calls == 1
    assert executor.token not in repr(payer)


async def test_executor_status(
    executor_server: tuple[Executor, TestServer], session: aiohttp.ClientSession
) -> None:
    status = await _payer(executor_server, session).status()
    assert (status.ready, status.balance_sats, status.lifecycle) == (True, 5000, "connected")


@pytest.mark.parametrize(
    ("mode", "token", "code", "upstream"),
    [
        ("ok", "wrong-token", "executor_unauthorized", "unauthorized"),
        ("error", None, "executor_rejected", "insufficient_balance"),
        ("bad_shape", None, "executor_bad_response", None),
        ("bad_preimage", None, "preimage_mismatch", None),
        ("overpay", None, "amount_exceeds_max", None),
    ],
)
async def test_executor_error_mapping(
    executor_server: tuple[Executor, TestServer],
    session: aiohttp.ClientSession,
    mode: str,
    token: str | None,
    code: str,
    upstream: str | None,
) -> None:
    executor = executor_server[0]
    executor.mode = mode
    invoice, _ = _invoice(executor.seller)
    payer = _payer(executor_server, session, auth_token=token or executor.token)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == code
    assert info.value.upstream_code == upstream
    assert payer.calls == 1


async def test_executor_timeout_is_enforced(
    executor_server: tuple[Executor, TestServer], session: aiohttp.ClientSession
) -> None:
    executor = executor_server[0]
    executor.mode = "hang"
    invoice, _ = _invoice(executor.seller)
    payer = _payer(executor_server, session, timeout_ms=200)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == "executor_timeout"
    assert len(executor.received) == 1


async def test_executor_unreachable(
    aiohttp_server: Any, seller_server: tuple[Seller, TestServer], session: aiohttp.ClientSession
) -> None:
    seller = seller_server[0]
    server = await aiohttp_server(Executor(seller).app(), host="127.0.0.1")
    url = str(server.make_url("/"))
    await server.close()
    invoice, _ = _invoice(seller)
    payer = WalletExecutorPayer(url, "t", 2_000, session)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == "executor_unreachable"


def test_preimage_validation() -> None:
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).digest()
    assert validate_preimage(preimage.hex().upper(), payment_hash) == preimage.hex()
    for bad, code in [
        (preimage.hex() + "00" * 16, "invalid_preimage"),  # l402-requests' 96-hex bug
        ("zz" * 32, "invalid_preimage"),
        (None, "invalid_preimage"),
        ("00" * 32, "preimage_mismatch"),
    ]:
        with pytest.raises(PaymentError) as info:
            validate_preimage(bad, payment_hash)
        assert info.value.code == code


class FakeLnd:
    """Stands in for LndClient.pay_invoice."""

    def __init__(self, outcome: Payment | Exception) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, int, int]] = []

    async def pay_invoice(
        self, bolt11: str, *, fee_limit_msat: int, timeout_seconds: int = 60
    ) -> Payment:
        self.calls.append((bolt11, fee_limit_msat, timeout_seconds))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def _lnd_case(amount: int = 10_000) -> tuple[str, bytes, bytes]:
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).digest()
    return make_invoice(PrivateKey(), amount, payment_hash), preimage, payment_hash


async def test_lnd_payer_success() -> None:
    invoice, preimage, payment_hash = _lnd_case()
    lnd = FakeLnd(Payment(payment_hash, preimage, 10_000, 3))
    payer = LndPayer(lnd, fee_limit_msat=5_000, timeout_seconds=30)
    receipt = await payer.pay(invoice, 100_000, "h", "r")
    assert lnd.calls == [(invoice, 5_000, 30)]
    assert (receipt.payment_id, receipt.amount_msats) == (payment_hash.hex(), 10_000)
    assert receipt.preimage_hex == preimage.hex()
    assert payer.calls == 1


@pytest.mark.parametrize(
    ("error", "code", "upstream"),
    [
        (PaymentFailed("SendPaymentV2", "FAILURE_REASON_NO_ROUTE"), "payment_failed", None),
        (LndUnavailable("SendPaymentV2", "UNAVAILABLE", "down"), "lnd_error", "UNAVAILABLE"),
    ],
)
async def test_lnd_payer_errors(error: Exception, code: str, upstream: str | None) -> None:
    invoice, _, _ = _lnd_case()
    payer = LndPayer(FakeLnd(error))
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == code
    assert info.value.upstream_code == (upstream or "FAILURE_REASON_NO_ROUTE")


async def test_lnd_payer_checks_amount_and_preimage() -> None:
    invoice, _, payment_hash = _lnd_case(250_000)
    lnd = FakeLnd(Payment(payment_hash, b"\x00" * 32, 250_000, 0))
    payer = LndPayer(lnd)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == "amount_exceeds_max"
    assert lnd.calls == []
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 300_000, "h", "r")
    assert info.value.code == "preimage_mismatch"
    assert payer.calls == 2
