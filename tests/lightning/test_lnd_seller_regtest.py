"""The seller's lean LND client (gateway.lightning.lnd.seller) against the real regtest LND,
checked against what grpcio's client (gateway.lightning.lnd.node) reads of the same
invoices, and its failures: a node that is down, one that never answers, a wrong
certificate, calls the macaroon does not allow, and windows smaller than an answer."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.lightning.errors import BackendUnavailable, NotFound, PermissionDenied
from gateway.lightning.lnd import LndClient, h2conn
from gateway.lightning.lnd.seller import LndSeller
from gateway.lightning.types import Invoice, InvoiceState
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from tests.gateway.harness import pay

pytestmark = pytest.mark.regtest


@pytest.fixture
async def seller(regtest: Descriptor) -> AsyncIterator[LndSeller]:
    client = LndSeller.connect(
        regtest.seller.rpc,
        tls_cert=Path(regtest.seller.tls_cert),
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=15.0,
    )
    yield client
    await client.close()


async def test_invoices_read_the_same_as_through_grpcio(
    seller: LndSeller, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    added = await seller.add_invoice(12_345, "lean: roundtrip", 600, private=False)
    assert len(added.payment_hash) == 32
    assert added.payment_request.startswith("lnbcrt")
    mine = await seller.lookup_invoice(added.payment_hash)
    theirs = await seller_invoices.lookup_invoice(added.payment_hash)
    assert mine == theirs
    assert (mine.value_msat, mine.memo, mine.expiry, mine.private) == (
        12_345,
        "lean: roundtrip",
        600,
        False,
    )
    assert mine.state is InvoiceState.OPEN
    await pay(buyer_admin, added.payment_request)
    settled = await seller.lookup_invoice(added.payment_hash)
    assert settled.state is InvoiceState.SETTLED
    assert settled.amt_paid_msat == 12_345
    assert settled == await seller_invoices.lookup_invoice(added.payment_hash)
    page = await seller.invoices(0, 1000, created_since=mine.creation_date)
    assert page == await seller_invoices.invoices(0, 1000, created_since=mine.creation_date)
    assert added.payment_hash in {i.payment_hash for i in page}
    private = await seller.add_invoice(1_000, "lean: private", 600, private=True)
    assert (await seller.lookup_invoice(private.payment_hash)).private is True


async def test_settlements_stream_replays_and_goes_live(
    seller: LndSeller, buyer_admin: LndClient
) -> None:
    first = await seller.add_invoice(2_000, "lean: stream first", 600, private=False)
    await pay(buyer_admin, first.payment_request)
    after = (await seller.lookup_invoice(first.payment_hash)).settle_index - 1
    events: asyncio.Queue[Invoice] = asyncio.Queue()

    async def follow() -> None:
        async for invoice in seller.settlements(after):
            await events.put(invoice)

    task = asyncio.create_task(follow())
    try:
        replayed = await asyncio.wait_for(events.get(), 30)
        assert replayed.payment_hash == first.payment_hash
        assert replayed.state is InvoiceState.SETTLED
        live = await seller.add_invoice(3_000, "lean: stream live", 600, private=False)
        added = await asyncio.wait_for(events.get(), 30)
        assert (added.payment_hash, added.state) == (live.payment_hash, InvoiceState.OPEN)
        await pay(buyer_admin, live.payment_request)
        paid = await asyncio.wait_for(events.get(), 30)
        assert (paid.payment_hash, paid.state) == (live.payment_hash, InvoiceState.SETTLED)
        assert paid.settle_index > replayed.settle_index
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_concurrent_calls_share_one_connection(seller: LndSeller) -> None:
    added = await asyncio.gather(
        *(seller.add_invoice(1_000 + i, f"lean: concurrent {i}", 600, False) for i in range(40))
    )
    assert len({a.payment_hash for a in added}) == 40
    assert seller._connection is not None
    assert seller._connection.usable


async def test_refusals_are_typed(seller: LndSeller) -> None:
    with pytest.raises(NotFound):
        await seller.lookup_invoice(b"\x01" * 32)
    with pytest.raises(PermissionDenied):  # invoice.macaroon may not read the node's info
        await seller.node_info()
    assert (await seller.health(5.0)).ready  # and the connection survived both


async def test_answers_larger_than_the_windows_arrive_whole(
    regtest: Descriptor,
    seller_invoices: LndClient,
    buyer_admin: LndClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows of 16 KiB: a page of invoices over several windows (granted back while a
    message is incomplete) and a stream of events (granted as they are read)."""
    monkeypatch.setattr(h2conn, "RECEIVE_WINDOW", 16 * 1024)
    monkeypatch.setattr(h2conn, "GRANT_AT", 4 * 1024)
    client = LndSeller.connect(
        regtest.seller.rpc,
        tls_cert=Path(regtest.seller.tls_cert),
        macaroon=Path(regtest.seller.invoice_macaroon),
    )
    try:
        for i in range(60):  # each listed invoice is ~500 bytes: the page is > 16 KiB
            await client.add_invoice(1_000, f"lean: window {i}", 600, False)
        page = await client.invoices(0, 2000)
        assert len(page) >= 60
        assert page == await seller_invoices.invoices(0, 2000)
        paid = await client.add_invoice(1_000, "lean: window paid", 600, False)
        await pay(buyer_admin, paid.payment_request)
        index = (await client.lookup_invoice(paid.payment_hash)).settle_index
        wanted: set[bytes] = set()
        seen: set[bytes] = set()
        stream = client.settlements(index - 1)  # that settlement replayed, then live events
        first = await anext(stream)
        assert (first.payment_hash, first.state) == (paid.payment_hash, InvoiceState.SETTLED)
        for i in range(40):  # 40 added-invoice events of ~500 bytes: more than a window
            added = await client.add_invoice(1_000, f"lean: event {i}", 600, False)
            wanted.add(added.payment_hash)
        async with asyncio.timeout(60):
            async for invoice in stream:
                seen.add(invoice.payment_hash)
                if wanted <= seen:
                    break
        await stream.aclose()
    finally:
        await client.close()


async def test_a_node_that_is_down_fails_fast_and_then_at_once(regtest: Descriptor) -> None:
    client = LndSeller.connect(
        f"127.0.0.1:{free_port()}",
        tls_cert=Path(regtest.seller.tls_cert),
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=2.0,
    )
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await client.add_invoice(1_000, "x", 60, False)
        assert time.monotonic() - start < 2.0
        with pytest.raises(BackendUnavailable):  # within the pause: no new attempt
            await client.add_invoice(1_000, "x", 60, False)
        health = await client.health(1.0)
        assert not health.ready
        assert health.detail.startswith("not ready: connection: nothing answers")
    finally:
        await client.close()


async def test_a_node_that_never_answers_fails_within_the_deadline(regtest: Descriptor) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the kernel does) and never says a word
    port = silent.getsockname()[1]
    client = LndSeller.connect(
        f"127.0.0.1:{port}",
        tls_cert=Path(regtest.seller.tls_cert),
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=1.0,
    )
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await client.add_invoice(1_000, "x", 60, False)
        assert time.monotonic() - start < 3.0
    finally:
        await client.close()
        silent.close()


async def test_a_certificate_lnd_does_not_hold_is_refused(
    regtest: Descriptor, tmp_path: Path
) -> None:
    other = Path(regtest.buyer.tls_cert)  # another node's self-signed certificate
    client = LndSeller.connect(
        regtest.seller.rpc,
        tls_cert=other,
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=5.0,
    )
    try:
        with pytest.raises(BackendUnavailable, match=r"TLS.*certificate verify failed"):
            await client.add_invoice(1_000, "x", 60, False)
    finally:
        await client.close()
    fresh = LndSeller.connect(regtest.seller.rpc, tls_cert=other, macaroon=None, timeout=5.0)
    try:  # readiness names the cause in the operator's terms (gateway.lightning.lnd.diagnose)
        health = await fresh.health(5.0)
        assert "lightning.tls_cert is not this node's certificate" in health.detail
    finally:
        await fresh.close()


async def test_a_file_that_is_no_certificate_fails_calls_not_the_start(
    regtest: Descriptor, tmp_path: Path
) -> None:
    garbage = tmp_path / "tls.cert"
    garbage.write_text("not a certificate\n")
    client = LndSeller.connect(  # as a gRPC channel: nothing is checked before a call
        regtest.seller.rpc,
        tls_cert=garbage,
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=5.0,
    )
    try:
        with pytest.raises(BackendUnavailable, match="not a PEM certificate"):
            await client.add_invoice(1_000, "x", 60, False)
    finally:
        await client.close()
