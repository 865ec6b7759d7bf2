"""Pruning against the real seller LND: only rows whose invoice LND canceled go.

Tokens are minted by the real Minter on the seller's LND client; one invoice gets
a 1-second expiry and LND cancels it itself. Paid, open and unknown invoices
keep their rows; an unreachable LND deletes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.jobs.pruning import DAY_SECONDS, PruneResult, TokenPruner
from gateway.l402.mint import Challenge, Minter, MintRequest
from gateway.lightning import InvoiceState
from gateway.lightning.lnd import LndClient
from gateway.observability.metrics import GatewayMetrics
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.keys import BACKGROUND_KEY
from gateway.server.serve import GatewayServer
from gateway.store import Store, open_store
from gateway.store.types import SettledInvoice
from tests.gateway.harness import Gateway, pay, poll, write_config
from tests.store.factories import make_record

pytestmark = pytest.mark.regtest

ROUTE = "premium"
WEEK = 7 * DAY_SECONDS
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'tokens.db'}")
    yield store
    await store.close()


async def mint(minter: Minter, expiry: int, memo: str, *, age: float = 0.0) -> Challenge:
    """A challenge minted `age` seconds in the past (as the gateway's clock would say)."""
    request = MintRequest(
        route=ROUTE, service=ROUTE, price_msat=5_000, memo=memo, expiry=expiry, private=True
    )
    return await minter.mint(request, int(time.time() - age))


async def wait_state(lnd: LndClient, payment_hash: bytes, state: InvoiceState) -> None:
    async def reached() -> bool:
        return (await lnd.lookup_invoice(payment_hash)).state is state

    await poll(f"invoice {payment_hash.hex()[:12]} to be {state.name}", reached, timeout=60.0)


def pruned(metrics: GatewayMetrics) -> float | None:
    return metrics.registry.get_sample_value("l402_tokens_pruned_total")


async def alive(store: Store, challenge: Challenge) -> bool:
    return await store.route_for_payment_hash(challenge.payment_hash) is not None


async def test_only_the_canceled_invoice_is_pruned(
    store: Store, seller_invoices: LndClient, buyer_admin: LndClient
) -> None:
    minter = Minter(seller_invoices, store)
    expired = await mint(minter, 1, "prune: expires unpaid")
    booked = await mint(minter, 3600, "prune: paid and booked")
    paid = await mint(minter, 3600, "prune: paid, not booked yet")
    still_open = await mint(minter, 3600, "prune: open")
    unknown = make_record(ROUTE, created_at=int(time.time()))  # LND never saw this hash
    await store.put_token(unknown)

    await pay(buyer_admin, booked.invoice)
    await pay(buyer_admin, paid.invoice)
    invoice = await seller_invoices.lookup_invoice(booked.payment_hash)
    assert invoice.state is InvoiceState.SETTLED
    await store.record_settlement(
        SettledInvoice(
            booked.payment_hash,
            ROUTE,
            invoice.amt_paid_msat,
            invoice.settle_index,
            invoice.settle_date,
        )
    )
    await wait_state(seller_invoices, expired.payment_hash, InvoiceState.CANCELED)
    assert (await seller_invoices.lookup_invoice(paid.payment_hash)).state is InvoiceState.SETTLED

    metrics = GatewayMetrics()
    pruner = TokenPruner(seller_invoices, store, metrics, older_than_seconds=WEEK, batch=500)
    assert await pruner.prune_once(int(time.time())) == PruneResult(0, 0, 0)  # all too young

    far_future = int(time.time()) + 30 * DAY_SECONDS
    result = await pruner.prune_once(far_future)
    # The booked one is no candidate; the paid, open and unknown ones are checked and kept.
    assert result == PruneResult(checked=4, deleted=1, kept=3, not_found=1)
    assert not await alive(store, expired)
    for challenge in (booked, paid, still_open):
        assert await alive(store, challenge)
    assert await store.get_root_key(unknown.key_id) == unknown.root_key
    assert pruned(metrics) == 1

    # Kept rows never block the scan: with one-row rounds it still walks past them.
    paging = TokenPruner(seller_invoices, store, metrics, WEEK, batch=1)
    total = await paging.prune_pass(far_future)
    assert (total.checked, total.deleted, total.kept, total.finished) == (3, 0, 3, True)


async def test_unreachable_lnd_deletes_nothing(store: Store, regtest: Descriptor) -> None:
    records = [make_record(ROUTE, created_at=1_700_000_000 + i) for i in range(3)]
    for record in records:
        await store.put_token(record)
    lnd = LndClient.connect(
        f"127.0.0.1:{free_port()}",  # nothing listens here
        tls_cert=Path(regtest.seller.tls_cert),
        macaroon=Path(regtest.seller.invoice_macaroon),
        timeout=2.0,
    )
    metrics = GatewayMetrics()
    try:
        pruner = TokenPruner(lnd, store, metrics, WEEK)
        result = await pruner.prune_once(int(time.time()))
    finally:
        await lnd.close()
    assert result == PruneResult(1, 0, 1, finished=False, error="UNAVAILABLE")
    for record in records:
        assert await store.get_root_key(record.key_id) == record.root_key
    assert pruned(metrics) == 0


async def test_background_pass_runs_after_its_delay(
    store: Store, seller_invoices: LndClient
) -> None:
    minter = Minter(seller_invoices, store)
    expired = await mint(minter, 1, "prune: background", age=WEEK)
    await wait_state(seller_invoices, expired.payment_hash, InvoiceState.CANCELED)
    pruner = TokenPruner(seller_invoices, store, GatewayMetrics(), WEEK - 60)
    task = asyncio.create_task(pruner.run(first_delay=0.0, interval=3600.0))
    try:
        await asyncio.wait_for(pruner.pass_done.wait(), timeout=30.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert pruner.last_pass is not None
    assert pruner.last_pass.deleted == 1
    assert not await alive(store, expired)


async def test_gateway_runs_a_pruner_unless_disabled(gateway: Gateway) -> None:
    assert gateway.server.config.store.prune_after_days == 7
    assert "pruner" in gateway.server.app[BACKGROUND_KEY]
    await gateway.stop()  # frees the listeners for the second server
    config = load_config(gateway.config_path)
    config = dataclasses.replace(
        config, store=dataclasses.replace(config.store, prune_after_days=0)
    )
    server = GatewayServer(config)
    await server.start()
    try:
        assert "pruner" not in server.app[BACKGROUND_KEY]
    finally:
        await server.stop()


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60.0)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_prune_cli_dry_run_then_prune(gateway: Gateway, seller_invoices: LndClient) -> None:
    await gateway.stop()  # the CLI works on the gateway's store while nothing serves
    shared = await open_store(gateway.document["store"]["url"])
    try:
        minter = Minter(seller_invoices, shared)
        expired = await mint(minter, 1, "prune: cli expired", age=8 * DAY_SECONDS)
        still_open = await mint(minter, 3600, "prune: cli open", age=8 * DAY_SECONDS)
        await wait_state(seller_invoices, expired.payment_hash, InvoiceState.CANCELED)

        config = str(gateway.config_path)
        code, out, err = await cli("prune", "--config", config, "--dry-run")
        assert code == 0, err
        assert "total: checked 2, would delete 1, kept 1" in out
        assert await alive(shared, expired)

        code, out, err = await cli("prune", "--config", config, "--older-than-days", "9")
        assert (code, "total: checked 0, deleted 0, kept 0" in out) == (0, True), out + err

        code, out, err = await cli("prune", "--config", config)
        assert code == 0, err
        assert "total: checked 2, deleted 1, kept 1" in out
        assert not await alive(shared, expired)
        assert await alive(shared, still_open)
    finally:
        await shared.close()


async def test_prune_cli_with_lnd_down_exits_1_and_keeps_rows(gateway: Gateway) -> None:
    await gateway.stop()
    document = dict(gateway.document)
    document["lnd"] = dict(document["lnd"], host=f"127.0.0.1:{free_port()}", timeout_seconds=2)
    path = gateway.config_path.with_name("down.yaml")
    write_config(path, document)
    shared = await open_store(document["store"]["url"])
    try:
        record = make_record(ROUTE, created_at=1_700_000_000)
        await shared.put_token(record)
        code, out, err = await cli("prune", "--config", str(path))
        assert code == 1
        assert "LND error UNAVAILABLE" in err
        assert "deleted 0" in out
        assert await shared.get_root_key(record.key_id) == record.root_key
    finally:
        await shared.close()
