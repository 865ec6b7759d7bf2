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
from gateway.lightning.errors import BackendUnavailable, InvalidRequest, PaymentFailed
from gateway.lightning.types import Payment, WalletState

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
    ("mode", "token", "code", "upstream", "spent", "proven"),
    [
        # the executor refused: nothing moved
        ("ok", "wrong-token", "executor_unauthorized", "unauthorized", None, False),
        ("error", None, "executor_rejected", "insufficient_balance", None, False),
        # HTTP 200 ("paid") but unreadable: the most it may have cost
        ("bad_shape", None, "executor_bad_response", None, 100_000, False),
        ("not_json", None, "executor_bad_response", None, 100_000, False),
        # the reported amount, with no proof
        ("bad_preimage", None, "preimage_mismatch", None, 10_000, False),
        # the reported amount, with a proven preimage
        ("overpay", None, "amount_exceeds_max", None, 100_001, True),
    ],
)
async def test_executor_error_mapping(
    executor_server: tuple[Executor, TestServer],
    session: aiohttp.ClientSession,
    mode: str,
    token: str | None,
    code: str,
    upstream: str | None,
    spent: int | None,
    proven: bool,
) -> None:
    executor = executor_server[0]
    executor.mode = mode
    invoice, preimage = _invoice(executor.seller)
    payer = _payer(executor_server, session, auth_token=token or executor.token)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == code
    assert info.value.upstream_code == upstream
    assert info.value.spent_msats == spent
    receipt = info.value.receipt
    assert (receipt is not None) == proven
    if receipt is not None:
        assert (receipt.preimage_hex, receipt.amount_msats) == (preimage.hex(), 100_001)
    assert preimage.hex() not in repr(info.value)
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
    assert info.value.spent_msats == 100_000  # it may have paid: the maximum is at risk
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
    assert info.value.spent_msats is None  # never connected: nothing was sent


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


SEND = "SendPaymentV2"


class FakeLnd:
    """Stands in for LndClient.get_state and LndClient.pay_invoice."""

    def __init__(
        self, outcome: Payment | Exception, state: WalletState | Exception = WalletState.RPC_ACTIVE
    ) -> None:
        self.outcome = outcome
        self.state = state
        self.calls: list[tuple[str, int, int]] = []

    async def get_state(self, *, timeout: float | None = None) -> WalletState:
        if isinstance(self.state, Exception):
            raise self.state
        return self.state

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
    # what the payment cost: value_msat + fee_msat
    assert (receipt.payment_id, receipt.amount_msats) == (payment_hash.hex(), 10_003)
    assert receipt.preimage_hex == preimage.hex()
    assert payer.calls == 1


@pytest.mark.parametrize(
    ("error", "code", "upstream", "spent"),
    [
        # a final FAILED state, or LND refusing the request: nothing moved
        (PaymentFailed(SEND, "FAILURE_REASON_NO_ROUTE"), "payment_failed", None, None),
        (InvalidRequest(SEND, "INVALID_ARGUMENT", "x"), "lnd_error", "INVALID_ARGUMENT", None),
        # the stream broke or timed out: the payment may be in flight (amount + fee limit)
        (BackendUnavailable(SEND, "UNAVAILABLE", "down"), "lnd_error", "UNAVAILABLE", 15_000),
        (TimeoutError(), "payment_timeout", None, 15_000),
    ],
)  # fmt: skip
async def test_lnd_payer_errors(
    error: Exception, code: str, upstream: str | None, spent: int | None
) -> None:
    invoice, _, _ = _lnd_case()
    payer = LndPayer(FakeLnd(error), fee_limit_msat=5_000)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == code
    expected_upstream = upstream or (
        "FAILURE_REASON_NO_ROUTE" if code == "payment_failed" else None
    )
    assert info.value.upstream_code == expected_upstream
    assert info.value.spent_msats == spent


async def test_lnd_payer_checks_amount_and_preimage() -> None:
    invoice, _, payment_hash = _lnd_case(250_000)
    lnd = FakeLnd(Payment(payment_hash, b"\x00" * 32, 250_000, 0))
    payer = LndPayer(lnd)
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 100_000, "h", "r")
    assert info.value.code == "amount_exceeds_max"
    assert lnd.calls == []
    assert info.value.spent_msats is None  # refused before sending
    with pytest.raises(PaymentError) as info:
        await payer.pay(invoice, 300_000, "h", "r")
    assert info.value.code == "preimage_mismatch"
    assert info.value.spent_msats == 250_000  # LND reported it paid
    assert payer.calls == 2
    with pytest.raises(PaymentError) as info:
        await payer.pay("lnbc1garbage", 300_000, "h", "r")
    assert info.value.code == "invalid_invoice"
