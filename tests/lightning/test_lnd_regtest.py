"""The LND client against real LND nodes on regtest."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from gateway.lightning import (
    BackendError,
    BackendUnavailable,
    InvoiceState,
    NotFound,
    PaymentFailed,
    PermissionDenied,
    WalletState,
)
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port

pytestmark = pytest.mark.regtest


async def test_invoice_pay_settle_roundtrip(
    seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    added = await seller_invoices.add_invoice(
        value_msat=12_345_000, memo="ep212 premium", expiry=600, private=True
    )
    assert len(added.payment_hash) == 32
    assert added.payment_request.startswith("lnbcrt")

    looked = await seller_invoices.lookup_invoice(added.payment_hash)
    assert looked.value_msat == 12_345_000
    assert looked.memo == "ep212 premium"
    assert looked.expiry == 600
    assert looked.private is True
    assert looked.num_route_hints >= 1, "private invoice must carry route hints"
    assert looked.state is InvoiceState.OPEN

    decoded = await buyer_admin.decode_pay_req(added.payment_request)
    assert decoded.num_msat == 12_345_000
    assert decoded.payment_hash == added.payment_hash
    assert decoded.expiry == 600
    assert decoded.description == "ep212 premium"
    assert decoded.num_route_hints >= 1

    # Subscribe from the current settle index before paying, so the settlement is live.
    stream = seller_invoices.subscribe_invoices(add_index=added.add_index)
    settled: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        async for inv in stream:
            if inv.payment_hash == added.payment_hash and inv.state is InvoiceState.SETTLED:
                settled.set_result(inv.settle_index)
                return

    watcher = asyncio.create_task(watch())
    try:
        payment = await buyer_admin.pay_invoice(
            added.payment_request, fee_limit_msat=10_000, timeout_seconds=30
        )
        assert hashlib.sha256(payment.preimage).digest() == added.payment_hash
        assert payment.payment_hash == added.payment_hash
        assert payment.value_msat == 12_345_000
        settle_index = await asyncio.wait_for(settled, 30)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    after = await seller_invoices.lookup_invoice(added.payment_hash)
    assert after.state is InvoiceState.SETTLED
    assert after.amt_paid_msat == 12_345_000
    assert after.settle_index == settle_index > 0


async def test_subscription_replays_from_settle_index(
    seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    """A follower that reconnects with its last settle index sees exactly what it missed."""
    hashes = []
    for _ in range(2):
        inv = await seller_invoices.add_invoice(value_msat=1_000, memo="replay", expiry=600)
        await buyer_admin.pay_invoice(inv.payment_request, fee_limit_msat=1_000)
        hashes.append(inv.payment_hash)
    first = await seller_invoices.lookup_invoice(hashes[0])

    seen = []

    async def collect() -> None:
        async for inv in seller_invoices.subscribe_invoices(settle_index=first.settle_index):
            if inv.state is InvoiceState.SETTLED:
                seen.append(inv.payment_hash)
                if hashes[1] in seen:
                    return

    await asyncio.wait_for(collect(), 30)
    assert hashes[1] in seen
    assert hashes[0] not in seen


async def test_list_invoices_and_node_info(
    seller_invoices: LndClient, seller_readonly: LndClient, regtest: Descriptor
) -> None:
    added = await seller_invoices.add_invoice(value_msat=5_000, memo="list me", expiry=60)
    listed = await seller_invoices.list_invoices(num_max=1000)
    assert added.payment_hash in {i.payment_hash for i in listed}
    info = await seller_readonly.get_info()
    assert info.pubkey == regtest.seller.pubkey
    assert info.version.startswith("0.21.2-beta")
    assert info.block_height >= 500
    assert await seller_readonly.get_state() is WalletState.SERVER_ACTIVE


async def test_invoice_macaroon_cannot_pay_or_get_info(
    seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    invoice = await buyer_admin.add_invoice(value_msat=1_000, memo="x", expiry=60)
    with pytest.raises(PermissionDenied) as exc:
        await seller_invoices.pay_invoice(invoice.payment_request, fee_limit_msat=1_000)
    assert exc.value.method == "SendPaymentV2"
    with pytest.raises(PermissionDenied):
        await seller_invoices.get_info()


async def test_unknown_invoice_is_not_found(seller_invoices: LndClient) -> None:
    with pytest.raises(NotFound):
        await seller_invoices.lookup_invoice(os.urandom(32))


async def test_payment_beyond_capacity_fails_with_reason(
    seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    too_big = await seller_invoices.add_invoice(value_msat=50_000_000_000, memo="x", expiry=60)
    with pytest.raises(PaymentFailed) as exc:
        await buyer_admin.pay_invoice(too_big.payment_request, fee_limit_msat=1_000)
    assert exc.value.reason.startswith("FAILURE_REASON_")
    assert exc.value.reason != "FAILURE_REASON_NONE"


async def test_garbage_payment_request_is_a_typed_error(buyer_admin: LndClient) -> None:
    with pytest.raises(BackendError) as exc:
        await buyer_admin.decode_pay_req("lnbcrt1notaninvoice")
    assert not isinstance(exc.value, BackendUnavailable)


async def test_unreachable_lnd_fails_within_deadline(regtest: Descriptor) -> None:
    client = LndClient.connect(
        f"127.0.0.1:{free_port()}",
        tls_cert=Path(regtest.seller.tls_cert),
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=2.0,
    )
    start = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable):
            await client.add_invoice(value_msat=1_000, memo="x", expiry=60)
    finally:
        await client.close()
    assert time.monotonic() - start < 4.0
