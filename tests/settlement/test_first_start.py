"""No revenue missed at a first start, and missed settlements found again (real regtest LND).

The race: a follower with nothing booked yet lists LND's invoices and then
subscribes. LND reads settle index 0 as "no backlog", so an invoice settled
between the listing and the subscription was never booked by the old
follower, and a later settlement moved the resume index past it for good
(paid 20,000 msat, booked 10,000). `GatedFeed` holds the follower exactly at
that point while the test pays: it is the real LND client with a gate in
front of SubscribeInvoices (test instrumentation, not a fake of LND).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.jobs.reconcile import reconcile
from gateway.jobs.settlement import SettlementFollower
from gateway.l402.mint import Challenge, Minter, MintRequest
from gateway.lightning import Invoice, InvoiceState
from gateway.lightning.lnd import LndClient
from gateway.observability.metrics import GatewayMetrics
from gateway.regtest.network import Descriptor
from gateway.store import Store, open_store
from tests.gateway.harness import pay, poll, routes_document, write_config

pytestmark = pytest.mark.regtest

PRICE = 10_000
REPO = Path(__file__).resolve().parents[2]


class GatedFeed:
    """The real seller LND; `settlements` waits at a gate the test opens."""

    def __init__(self, lnd: LndClient) -> None:
        self._lnd = lnd
        self.at_gate = asyncio.Event()
        self.open = asyncio.Event()
        self.subscriptions: list[tuple[int, int]] = []
        self.closed = 0  # streams the follower has closed (or that ended)

    async def invoices(self, *args: Any, **kwargs: Any) -> list[Invoice]:
        return await self._lnd.invoices(*args, **kwargs)

    async def settlements(self, after: int = 0) -> AsyncIterator[Invoice]:
        self.subscriptions.append((0, after))
        self.at_gate.set()
        await self.open.wait()
        try:
            async for invoice in self._lnd.settlements(after):
                yield invoice
        finally:
            self.closed += 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'tokens.db'}")
    yield store
    await store.close()


async def mint(lnd: LndClient, store: Store, memo: str) -> Challenge:
    request = MintRequest(
        route="premium", service="premium", price_msat=PRICE, memo=memo, expiry=3600, private=True
    )
    return await Minter(lnd, store).mint(request, int(time.time()))


async def settled(lnd: LndClient, challenge: Challenge) -> Invoice:
    invoice = await lnd.lookup_invoice(challenge.payment_hash)
    assert invoice.state is InvoiceState.SETTLED
    return invoice


async def booked(store: Store, challenge: Challenge) -> bool:
    info = await store.find_token(challenge.payment_hash)
    return info is not None and info.settled_at is not None


@contextlib.asynccontextmanager
async def following(
    feed: GatedFeed, store: Store, pause: float = 1.0
) -> AsyncIterator[GatewayMetrics]:
    metrics = GatewayMetrics()
    task = asyncio.create_task(SettlementFollower(feed, store, metrics, pause=pause).run())
    try:
        yield metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_payment_settling_while_the_follower_subscribes_is_booked(
    store: Store, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    in_window = await mint(seller_invoices, store, "first start: paid in the window")
    feed = GatedFeed(seller_invoices)
    async with following(feed, store) as metrics:
        await asyncio.wait_for(feed.at_gate.wait(), 60)  # listed; about to subscribe
        await pay(buyer_admin, in_window.invoice)
        await settled(seller_invoices, in_window)
        feed.open.set()

        later = await mint(seller_invoices, store, "first start: paid afterwards")
        await pay(buyer_admin, later.invoice)
        await poll("the later settlement booked", lambda: booked(store, later), timeout=60)
        await poll("the in-window settlement booked", lambda: booked(store, in_window), 60)

        rows = await store.revenue_report()
        assert [(r.route, r.settled_invoices, r.revenue_msat) for r in rows] == [
            ("premium", 2, 2 * PRICE)
        ]
        revenue = metrics.registry.get_sample_value(
            "l402_revenue_msats_total", {"route": "premium"}
        )
        assert revenue == 2 * PRICE
    # The resume index moved only with the in-order stream, never past a settlement not
    # booked: at least to the in-window one (the stream replays it, whatever booked it
    # first), at most to the later one. The later one reaches it through the stream, or
    # not at all when the catch-up listing booked it first and the stream, closed once
    # the later invoice was added, resumed after what it had seen (a restart's replay
    # then moves the index; nothing is lost).
    window = (await settled(seller_invoices, in_window)).settle_index
    final = (await settled(seller_invoices, later)).settle_index
    assert window <= await store.last_settle_index() <= final
    # One first-start subscription; any later one (the stream closes once invoices are
    # being added, see the next test) resumed after a settlement already processed.
    resumed = [after for _, after in feed.subscriptions[1:]]
    assert resumed == sorted(resumed)
    assert all(0 < after <= final for after in resumed)


async def test_a_settlement_while_unsubscribed_is_replayed(
    store: Store, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    """Once invoices are being added the follower closes its stream (LND then stops sending
    it every new invoice) and resubscribes after its pause: what settled meanwhile is
    replayed and booked, and the resume index follows."""
    first = await mint(seller_invoices, store, "pause: first")
    await pay(buyer_admin, first.invoice)
    feed = GatedFeed(seller_invoices)
    feed.open.set()
    async with following(feed, store, pause=8.0):
        await poll("the first settlement booked", lambda: booked(store, first), timeout=60)
        streams = len(feed.subscriptions)
        assert feed.closed == streams - 1  # the current stream is open

        during = await mint(seller_invoices, store, "pause: paid while unsubscribed")

        async def stream_closed() -> bool:
            return feed.closed == streams

        await poll("the stream closed on the added invoice", stream_closed, timeout=30)
        await pay(buyer_admin, during.invoice)
        assert len(feed.subscriptions) == streams  # paid while no stream was open
        assert not await booked(store, during)
        await poll("the replayed settlement booked", lambda: booked(store, during), timeout=60)
    assert len(feed.subscriptions) > streams
    assert feed.subscriptions[streams][1] >= (await settled(seller_invoices, first)).settle_index
    assert await store.last_settle_index() == (await settled(seller_invoices, during)).settle_index


async def test_a_restarted_follower_resumes_without_a_gap(
    store: Store, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    first = await mint(seller_invoices, store, "resume: first")
    await pay(buyer_admin, first.invoice)
    async with following(GatedFeed(seller_invoices), store) as _:
        pass  # cancelled at once: maybe before it booked anything
    feed = GatedFeed(seller_invoices)
    feed.open.set()
    async with following(feed, store):
        await poll("the first settlement booked", lambda: booked(store, first), timeout=60)
        second = await mint(seller_invoices, store, "resume: second")
        await pay(buyer_admin, second.invoice)
        await poll("the second settlement booked", lambda: booked(store, second), timeout=60)
    assert [r.settled_invoices for r in await store.revenue_report()] == [2]


async def test_reconcile_books_a_settlement_that_was_not_booked(
    store: Store, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    missed = await mint(seller_invoices, store, "reconcile: never booked")
    unpaid = await mint(seller_invoices, store, "reconcile: unpaid")
    await pay(buyer_admin, missed.invoice)  # no follower runs: the ledger never hears of it
    assert not await booked(store, missed)

    result = await reconcile(seller_invoices, store)
    assert (result.ours, result.booked, result.booked_msat) == (1, 1, PRICE)
    assert result.scanned >= 2
    assert result.settled >= 1
    assert await booked(store, missed)
    assert not await booked(store, unpaid)
    assert await store.last_settle_index() == 0  # reconcile never moves the resume index

    again = await reconcile(seller_invoices, store)
    assert (again.ours, again.booked) == (1, 0)  # idempotent
    rows = await store.revenue_report()
    assert [(r.route, r.settled_invoices, r.revenue_msat) for r in rows] == [("premium", 1, PRICE)]


async def test_report_reconcile_cli(
    tmp_path: Path, regtest: Descriptor, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    document = routes_document(regtest, "http://127.0.0.1:9", tmp_path, closed_port=9)
    config = write_config(tmp_path / "routes.yaml", document)
    store = await open_store(document["store"]["url"])
    try:
        missed = await mint(seller_invoices, store, "reconcile cli: never booked")
        await pay(buyer_admin, missed.invoice)
    finally:
        await store.close()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "report", "--reconcile", "--config", str(config),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "1 minted here; booked 1 missing (10.000 sat)" in text
    assert "premium" in text.split("reconcile:", 1)[1]  # the report below includes it
