"""Metered balances on real SQLite and real PostgreSQL: credit once, reserve, settle, expire.

Concurrency is shown with independent stores on one database (what worker
processes and replicas are) and with a second OS process: however the
reservations interleave, the balance never goes below zero and what is
debited never exceeds what was credited.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest

from gateway.store import Store, open_store
from gateway.store.types import BalanceMismatch, HoldStatus, SettleStatus

from .conftest import OpenStore
from .sql import fetch

NOW = 1_700_000_000
TOKEN = b"\x01" * 32
PAY = b"\xaa" * 32


async def credit(store: Store, units: int, *, balance: bytes = TOKEN, payment: bytes = PAY,
                 unit: str = "tokens", scope: str = "chat") -> bool:  # fmt: skip
    result = await store.credit_units(balance, payment, units, unit=unit, scope=scope, now=NOW)
    return result.credited


async def test_credit_is_once_per_payment(store: Store) -> None:
    assert await credit(store, 1000) is True
    again = await store.credit_units(TOKEN, PAY, 1000, unit="tokens", scope="chat", now=NOW + 5)
    assert again.credited is False
    assert again.balance.units == 1000  # not 2000
    assert await credit(store, 500, payment=b"\xbb" * 32) is True  # a second payment tops up
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert (balance.units, balance.credited, balance.debited, balance.held) == (1500, 1500, 0, 0)
    assert await store.get_balance(b"\x02" * 32, now=NOW) is None


async def test_credit_refuses_another_unit_scope_or_balance(store: Store, store_url: str) -> None:
    await credit(store, 10)
    with pytest.raises(BalanceMismatch):
        await credit(store, 10, payment=b"\xcc" * 32, unit="requests")
    with pytest.raises(BalanceMismatch):
        await credit(store, 10, payment=b"\xcc" * 32, scope="images")
    with pytest.raises(BalanceMismatch):
        await credit(store, 10, balance=b"\x02" * 32)  # PAY already credited TOKEN
    # The refused credits left nothing behind (their transaction rolled back).
    rows = await fetch(store_url, "SELECT payment_id FROM l402_balance_credits")
    assert rows == [(PAY,)]
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert balance.units == 10


async def test_reserve_settle_release(store: Store) -> None:
    await credit(store, 1000)
    hold = await store.reserve_units(TOKEN, 300, unit="tokens", scope="chat", now=NOW, ttl=60)
    assert (hold.status, hold.amount, hold.available) == (HoldStatus.RESERVED, 300, 700)
    assert hold.hold_id is not None
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert (balance.units, balance.held, balance.available) == (1000, 300, 700)

    done = await store.settle_units(TOKEN, hold.hold_id, 120, now=NOW + 1)
    assert (done.status, done.debited, done.shortfall, done.units, done.available) == (
        SettleStatus.SETTLED, 120, 0, 880, 880,
    )  # fmt: skip
    again = await store.settle_units(TOKEN, hold.hold_id, 120, now=NOW + 1)
    assert again.status is SettleStatus.UNKNOWN  # settled once only
    assert again.debited == 0

    other = await store.reserve_units(TOKEN, 50, unit="tokens", scope="chat", now=NOW, ttl=60)
    assert other.hold_id is not None
    assert await store.release_units(TOKEN, other.hold_id) is True
    assert await store.release_units(TOKEN, other.hold_id) is False
    assert (await store.settle_units(TOKEN, other.hold_id, 5, now=NOW)).status is (
        SettleStatus.UNKNOWN
    )
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert (balance.units, balance.debited, balance.held) == (880, 120, 0)


async def test_unknown_mismatched_and_insufficient(store: Store) -> None:
    unknown = await store.reserve_units(TOKEN, 1, unit="tokens", scope="chat", now=NOW, ttl=60)
    assert unknown.status is HoldStatus.UNKNOWN
    await credit(store, 100)
    for unit, scope in (("bytes", "chat"), ("tokens", "other")):
        hold = await store.reserve_units(TOKEN, 1, unit=unit, scope=scope, now=NOW, ttl=60)
        assert hold.status is HoldStatus.MISMATCH
    # All or nothing by default; a minimum allows a partial hold of what is left.
    whole = await store.reserve_units(TOKEN, 150, unit="tokens", scope="chat", now=NOW, ttl=60)
    assert (whole.status, whole.available) == (HoldStatus.INSUFFICIENT, 100)
    part = await store.reserve_units(
        TOKEN, 150, unit="tokens", scope="chat", now=NOW, ttl=60, minimum=1
    )
    assert (part.status, part.amount, part.available) == (HoldStatus.RESERVED, 100, 0)
    empty = await store.reserve_units(
        TOKEN, 150, unit="tokens", scope="chat", now=NOW, ttl=60, minimum=1
    )
    assert (empty.status, empty.available) == (HoldStatus.INSUFFICIENT, 0)


async def test_overuse_debits_only_what_no_other_hold_holds(store: Store) -> None:
    await credit(store, 1000)
    first = await store.reserve_units(TOKEN, 400, unit="tokens", scope="chat", now=NOW, ttl=60)
    second = await store.reserve_units(TOKEN, 400, unit="tokens", scope="chat", now=NOW, ttl=60)
    assert first.hold_id is not None
    assert second.hold_id is not None
    # The first answer used 900: it may take its own 400 and the 200 unreserved, not
    # the second request's 400.
    over = await store.settle_units(TOKEN, first.hold_id, 900, now=NOW)
    assert (over.debited, over.shortfall, over.units, over.available) == (600, 300, 400, 0)
    last = await store.settle_units(TOKEN, second.hold_id, 1000, now=NOW)
    assert (last.debited, last.shortfall, last.units) == (400, 600, 0)
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert (balance.units, balance.debited, balance.credited) == (0, 1000, 1000)


async def test_an_expired_hold_frees_its_units_and_can_still_be_settled(
    store: Store, store_url: str
) -> None:
    await credit(store, 100)
    crashed = await store.reserve_units(TOKEN, 100, unit="tokens", scope="chat", now=NOW, ttl=30)
    assert crashed.hold_id is not None
    blocked = await store.reserve_units(TOKEN, 1, unit="tokens", scope="chat", now=NOW + 29, ttl=30)
    assert blocked.status is HoldStatus.INSUFFICIENT
    later = await store.reserve_units(TOKEN, 60, unit="tokens", scope="chat", now=NOW + 30, ttl=30)
    assert (later.status, later.available) == (HoldStatus.RESERVED, 40)
    # The late answer is still billed, from what the live hold does not hold.
    late = await store.settle_units(TOKEN, crashed.hold_id, 70, now=NOW + 31)
    assert (late.status, late.debited, late.shortfall) == (SettleStatus.SETTLED, 40, 30)
    # Swept an hour after it expired; then it is gone.
    assert later.hold_id is not None
    assert await store.sweep_holds(NOW + 60 + 3599) == 0
    assert await store.sweep_holds(NOW + 60 + 3600) == 1
    assert await fetch(store_url, "SELECT count(*) FROM l402_balance_holds") == [(0,)]
    assert (await store.settle_units(TOKEN, later.hold_id, 1, now=NOW)).status is (
        SettleStatus.UNKNOWN
    )


async def test_a_live_hold_is_extended_an_expired_one_is_not(store: Store) -> None:
    await credit(store, 100)
    hold = await store.reserve_units(TOKEN, 100, unit="tokens", scope="chat", now=NOW, ttl=30)
    assert hold.hold_id is not None
    # Still streaming at NOW + 20: the reservation now lasts until NOW + 80.
    assert await store.extend_units(TOKEN, hold.hold_id, now=NOW + 20, ttl=60) is True
    held = await store.reserve_units(TOKEN, 1, unit="tokens", scope="chat", now=NOW + 79, ttl=5)
    assert held.status is HoldStatus.INSUFFICIENT
    # Never shortened; and once it has expired it stays expired (its units may be taken).
    assert await store.extend_units(TOKEN, hold.hold_id, now=NOW + 21, ttl=10) is False
    assert await store.extend_units(TOKEN, hold.hold_id, now=NOW + 80, ttl=60) is False
    freed = await store.reserve_units(TOKEN, 1, unit="tokens", scope="chat", now=NOW + 80, ttl=5)
    assert freed.status is HoldStatus.RESERVED
    assert await store.extend_units(TOKEN, b"\x09" * 16, now=NOW, ttl=60) is False


async def test_roll_settles_and_holds_in_one_step(store: Store) -> None:
    """A process's allotment: hold a chunk, then settle what it spent and hold the next."""
    await credit(store, 100)
    kw: dict[str, Any] = {"unit": "tokens", "scope": "chat", "ttl": 30}
    first = await store.roll_units(TOKEN, None, debit=0, keep=0, want=60, minimum=1, now=NOW, **kw)
    assert (first.status, first.amount, first.available, first.others) == (
        HoldStatus.RESERVED, 60, 40, 0,
    )  # fmt: skip
    other = await store.reserve_units(TOKEN, 30, unit="tokens", scope="chat", now=NOW, ttl=30)
    assert other.hold_id is not None
    # Spent 45, 10 still held by requests in flight, wants 50 more: only 15 are left.
    second = await store.roll_units(
        TOKEN, first.hold_id, debit=45, keep=10, want=50, minimum=1, now=NOW, **kw
    )
    assert (second.status, second.debited, second.amount, second.available) == (
        HoldStatus.RESERVED, 45, 25, 0,
    )  # fmt: skip
    assert second.others == 30
    # Spent 15 of the 25 and 8 more than that (over-use), 10 still in flight: the 8 cannot
    # come from the 30 another request holds nor from the 10 kept: a shortfall.
    third = await store.roll_units(
        TOKEN, second.hold_id, debit=23, keep=10, want=5, minimum=1, now=NOW, **kw
    )
    assert (third.status, third.amount, third.debited, third.shortfall) == (
        HoldStatus.INSUFFICIENT, 10, 15, 8,
    )  # fmt: skip
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert (balance.units, balance.held) == (100 - 45 - 15, 10 + 30)
    # The final flush: nothing kept, nothing wanted: no reservation is left.
    last = await store.roll_units(
        TOKEN, third.hold_id, debit=0, keep=0, want=0, minimum=0, now=NOW, **kw
    )
    assert (last.hold_id, last.amount) == (None, 0)
    gone = await store.roll_units(
        b"\x09" * 32, None, debit=0, keep=0, want=1, minimum=1, now=NOW, **kw
    )
    assert gone.status is HoldStatus.UNKNOWN
    kw["unit"] = "requests"
    odd = await store.roll_units(TOKEN, None, debit=0, keep=0, want=1, minimum=1, now=NOW, **kw)
    assert odd.status is HoldStatus.MISMATCH


async def test_argument_checks(store: Store) -> None:
    with pytest.raises(ValueError, match="estimate"):
        await store.reserve_units(TOKEN, 0, unit="tokens", scope="chat", now=NOW, ttl=1)
    with pytest.raises(ValueError, match="ttl"):
        await store.reserve_units(TOKEN, 1, unit="tokens", scope="chat", now=NOW, ttl=0)
    with pytest.raises(ValueError, match="units"):
        await store.credit_units(TOKEN, PAY, 2**63, unit="tokens", scope="chat", now=NOW)
    with pytest.raises(ValueError, match="actual"):
        await store.settle_units(TOKEN, b"x", -1, now=NOW)


# --- concurrency ---------------------------------------------------------------------------


async def _spend(store: Store, count: int, estimate: int, actual: int) -> list[int]:
    """`count` requests at once: reserve (partial holds allowed), then settle at `actual`."""

    async def one() -> int:
        hold = await store.reserve_units(
            TOKEN, estimate, unit="tokens", scope="chat", now=NOW, ttl=60, minimum=1
        )
        if hold.hold_id is None:
            return 0
        done = await store.settle_units(TOKEN, hold.hold_id, actual, now=NOW)
        return done.debited

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_parallel_reservations_from_two_stores_never_overdraw(
    open_stores: OpenStore, store_url: str
) -> None:
    first, second = await open_stores(), await open_stores()
    await credit(first, 37)  # nearly empty against 50 requests of up to 5
    debits = await asyncio.gather(_spend(first, 25, 4, 5), _spend(second, 25, 4, 5))
    total = sum(sum(d) for d in debits)
    balance = await first.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert total == balance.debited == 37  # everything spent, nothing more
    assert balance.units == 0
    rows = await fetch(store_url, "SELECT units, credited, debited FROM l402_balances")
    assert rows == [(0, 37, 37)]


def _child(url: str, ready: Any, go: Any, out: Any) -> None:
    async def run() -> list[int]:
        store = await open_store(url)
        try:
            ready.set()
            await asyncio.to_thread(go.wait, 30)
            return await _spend(store, 50, 4, 5)
        finally:
            await store.close()

    out.put(asyncio.run(run()))


async def test_two_processes_never_overdraw(store: Store, store_url: str) -> None:
    # Each process can spend at most 50 x 5 = 250 of 300: both must spend, and
    # together they would spend 500.
    await credit(store, 300)
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_child, args=(store_url, ready, go, out))
    child.start()
    try:
        assert await asyncio.to_thread(ready.wait, 60), "the second process did not start"
        go.set()
        ours = await _spend(store, 50, 4, 5)
        theirs = await asyncio.to_thread(out.get, True, 60)
    finally:
        await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0
    balance = await store.get_balance(TOKEN, now=NOW)
    assert balance is not None
    assert sum(ours) + sum(theirs) == balance.debited == 300
    assert balance.units == 0
    assert sum(theirs) >= 50  # the other process really spent its share
