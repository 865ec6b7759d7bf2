"""Per-process allotments of metered balances, on real SQLite and PostgreSQL stores.

Requests hold and settle in memory; the store sees one reservation per
process and balance, rolled now and then. Whatever the interleaving, across
"processes" (independent Allotments on independent stores of one database),
the store never debits more than was credited, and units a process holds
idle come back to the others.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.paywall.allotments import IDLE_SECONDS, Allotments
from gateway.store import Store
from gateway.store.types import HoldStatus, SettleStatus
from tests.store.conftest import OpenStore

BALANCE = b"\x07" * 32
NOW = 1_700_000_000.0


@pytest.fixture
async def second(open_stores: OpenStore) -> Store:
    """Another process's store on the same database."""
    return await open_stores()


async def credit(store: Store, units: int) -> None:
    await store.credit_units(
        BALANCE, b"\x08" * 32, units, unit="tokens", scope="chat", now=int(NOW)
    )


async def held_rows(store: Store) -> int:
    balance = await store.get_balance(BALANCE, now=int(NOW))
    assert balance is not None
    return balance.held


async def test_requests_hold_and_settle_in_memory(store: Store) -> None:
    await credit(store, 1000)
    reports: list[tuple[str, str, int, int]] = []
    mine = Allotments(store, lambda: NOW, lambda *r: reports.append(r))
    first = await mine.reserve(BALANCE, 10, unit="tokens", scope="chat", minimum=1)
    assert (first.status, first.amount, first.available) == (HoldStatus.RESERVED, 10, 990)
    # The store holds one chunk (32 estimates) for the process, not one row per request.
    assert await held_rows(store) == 320
    holds = [await mine.reserve(BALANCE, 10, unit="tokens", scope="chat", minimum=1)]
    holds += [await mine.reserve(BALANCE, 10, unit="tokens", scope="chat", minimum=1)]
    assert await held_rows(store) == 320  # no store write for these
    assert first.hold_id is not None
    settled = mine.settle(BALANCE, first.hold_id, 12)
    assert (settled.status, settled.debited) == (SettleStatus.SETTLED, 12)
    assert mine.settle(BALANCE, first.hold_id, 12).status is SettleStatus.UNKNOWN
    for hold in holds:
        assert hold.hold_id is not None
        mine.settle(BALANCE, hold.hold_id, 7)
    balance = await store.get_balance(BALANCE, now=int(NOW))
    assert balance is not None
    assert balance.debited == 0  # not yet: the store learns at the next roll
    await asyncio.sleep(IDLE_SECONDS)
    assert await mine.tend() == 1  # idle: settled and given back
    balance = await store.get_balance(BALANCE, now=int(NOW))
    assert balance is not None
    assert (balance.units, balance.held, balance.debited) == (1000 - 26, 0, 26)
    assert len(mine) == 0
    assert reports == []  # nothing beyond what requests spent, no shortfall


async def test_use_beyond_the_allotment_is_debited_at_the_roll_or_is_a_shortfall(
    store: Store,
) -> None:
    await credit(store, 50)
    reports: list[tuple[str, str, int, int]] = []
    mine = Allotments(store, lambda: NOW, lambda *r: reports.append(r))
    hold = await mine.reserve(BALANCE, 40, unit="tokens", scope="chat", minimum=1)
    # The chunk: what the request needs (half of the 50 would be too little); it holds 40.
    assert (hold.amount, hold.available) == (40, 10)
    assert hold.hold_id is not None
    assert mine.settle(BALANCE, hold.hold_id, 70).debited == 40  # the chunk's all
    await mine.close()
    balance = await store.get_balance(BALANCE, now=int(NOW))
    assert balance is not None
    assert (balance.units, balance.debited) == (0, 50)
    # At the roll: 10 more from what no reservation held, 20 that nobody could pay.
    assert reports == [("chat", "tokens", 10, 20)]
    refused = await mine.reserve(BALANCE, 1, unit="tokens", scope="chat", minimum=1)
    assert (refused.status, refused.available) == (HoldStatus.INSUFFICIENT, 0)
    assert (await mine.reserve(b"\x09" * 32, 1, unit="tokens", scope="chat", minimum=1)).status is (
        HoldStatus.UNKNOWN
    )
    other = await mine.reserve(BALANCE, 1, unit="requests", scope="chat", minimum=1)
    assert other.status is HoldStatus.MISMATCH


async def test_two_processes_never_overdraw_and_share_what_is_idle(
    store: Store, second: Store
) -> None:
    await credit(store, 100)
    one, two = Allotments(store, lambda: NOW), Allotments(second, lambda: NOW)
    tending = [asyncio.ensure_future(a.run()) for a in (one, two)]
    try:
        # Process one takes a chunk of 60, uses 10, then goes idle holding 50.
        first = await one.reserve(BALANCE, 60, unit="tokens", scope="chat", minimum=60)
        assert (first.status, first.amount) == (HoldStatus.RESERVED, 60)
        assert first.hold_id is not None
        one.settle(BALANCE, first.hold_id, 10)
        # Process two needs 45 of the 40 left beside it: it waits for one to give back.
        waited = asyncio.get_running_loop().time()
        late = await two.reserve(BALANCE, 45, unit="tokens", scope="chat", minimum=45)
        assert (late.status, late.amount) == (HoldStatus.RESERVED, 45)
        assert asyncio.get_running_loop().time() - waited >= IDLE_SECONDS / 2
        assert late.hold_id is not None
        two.settle(BALANCE, late.hold_id, 30)

        async def spend(ledger: Allotments) -> int:
            used = 0
            while True:
                hold = await ledger.reserve(BALANCE, 7, unit="tokens", scope="chat", minimum=7)
                if hold.status is not HoldStatus.RESERVED or hold.hold_id is None:
                    return used
                await asyncio.sleep(0)
                used += ledger.settle(BALANCE, hold.hold_id, 7).debited

        spent = await asyncio.gather(*(spend(a) for a in (one, two, one, two)))
    finally:
        for task in tending:
            task.cancel()
        await asyncio.gather(*tending, return_exceptions=True)
        await one.close()
        await two.close()
    balance = await store.get_balance(BALANCE, now=int(NOW))
    assert balance is not None
    assert balance.held == 0
    assert balance.debited == 10 + 30 + sum(spent) <= 100
    assert balance.units == 100 - balance.debited
    assert balance.units < 7  # drawn down to what no request of 7 fits in
