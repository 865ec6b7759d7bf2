"""Store behaviour, run against real SQLite and real PostgreSQL alike."""

from __future__ import annotations

import asyncio
import calendar

import pytest

from gateway.store import ReportRow, ReserveResult, Store, StoreError
from gateway.store.types import SettledInvoice

from .conftest import OpenStore
from .factories import make_record
from .sql import is_used

DAY1 = calendar.timegm((2026, 3, 1, 12, 0, 0))
DAY2 = calendar.timegm((2026, 3, 2, 9, 30, 0))


async def reserved(store: Store, key_id: bytes, now: int, lease_seconds: int = 30) -> bytes:
    """Reserve, insist it worked, and return the lease id."""
    result, lease_id = await store.reserve(key_id, now, lease_seconds)
    assert result is ReserveResult.RESERVED
    assert lease_id is not None
    return lease_id


async def test_root_key_round_trip(store: Store) -> None:
    record = make_record()
    await store.put_token(record)
    assert await store.get_root_key(record.key_id) == record.root_key
    assert await store.get_root_key(b"\x01" * 32) is None


async def test_duplicate_key_id_is_a_store_error(store: Store) -> None:
    record = make_record()
    await store.put_token(record)
    with pytest.raises(StoreError) as info:
        await store.put_token(record)
    assert record.root_key.hex() not in str(info.value)


async def test_root_key_is_not_in_the_record_repr() -> None:
    record = make_record()
    assert record.root_key.hex() not in repr(record)
    assert repr(record.root_key) not in repr(record)


async def test_revoke_blanks_the_root_key(store: Store) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    assert await store.revoke(record.token_id.hex()) is True
    assert await store.get_root_key(record.key_id) is None
    assert await store.revoke(record.token_id.hex()) is False  # already revoked
    assert await store.reserve(record.key_id, 100, 30) == (ReserveResult.UNKNOWN, None)


async def test_revoke_unknown_and_malformed(store: Store) -> None:
    assert await store.revoke("ab" * 32) is False
    with pytest.raises(ValueError, match="hex"):
        await store.revoke("not-hex")
    with pytest.raises(ValueError, match="32 bytes"):
        await store.revoke("abcd")


async def test_reserve_commit_release_cycle(store: Store, store_url: str) -> None:
    record = make_record(single_use=True)
    key = record.key_id
    await store.put_token(record)
    first = await reserved(store, key, 100)
    assert await store.reserve(key, 101, 30) == (ReserveResult.IN_USE, None)
    assert await store.release(key, first) is True
    assert await store.release(key, first) is False  # already released
    assert await is_used(store_url, key) is False
    second = await reserved(store, key, 102)
    assert second != first
    assert await store.commit(key, first, 103) is False  # a released lease is not current
    assert await store.commit(key, second, 103) is True
    assert await is_used(store_url, key) is True
    assert await store.reserve(key, 104, 30) == (ReserveResult.ALREADY_USED, None)
    assert await store.release(key, second) is False  # releasing a used token must not revive it
    assert (await store.reserve(key, 105, 30)).result is ReserveResult.ALREADY_USED
    assert await store.commit(key, second, 106) is False


async def test_reserve_unknown_token(store: Store, store_url: str) -> None:
    assert await store.reserve(b"\x02" * 32, 100, 30) == (ReserveResult.UNKNOWN, None)
    assert await is_used(store_url, b"\x02" * 32) is False
    assert await store.commit(b"\x02" * 32, b"\x00" * 16, 100) is False
    assert await store.release(b"\x02" * 32, b"\x00" * 16) is False


async def test_lease_of_a_crashed_holder_expires(store: Store) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    await reserved(store, record.key_id, 1_000)
    # The holder never commits nor releases (it crashed): the credential stays
    # blocked until the lease runs out, then it can be used again.
    assert (await store.reserve(record.key_id, 1_029, 30)).result is ReserveResult.IN_USE
    await reserved(store, record.key_id, 1_030)
    assert (await store.reserve(record.key_id, 1_031, 30)).result is ReserveResult.IN_USE


async def test_a_lost_lease_can_neither_commit_nor_release(
    open_stores: OpenStore, store_url: str
) -> None:
    # Two gateway processes: the first holder's request outlives its lease, the
    # second takes the token over, then the first one's late commit or release arrives.
    slow, other = await open_stores(), await open_stores()
    record = make_record(single_use=True)
    key = record.key_id
    await slow.put_token(record)
    lost = await reserved(slow, key, 1_000)  # lease until 1_030
    current = await reserved(other, key, 1_030)
    assert current != lost

    assert await slow.release(key, lost) is False  # its upstream answered 5xx
    assert await slow.commit(key, lost, 1_031) is False  # its upstream answered < 500
    assert await slow.release(key, lost) is False
    for store in (slow, other):
        assert await is_used(store_url, key) is False  # used_at untouched
        # The second holder's lease is intact: nobody else gets the token.
        assert (await store.reserve(key, 1_032, 30)).result is ReserveResult.IN_USE

    assert await other.commit(key, current, 1_033) is True
    assert await is_used(store_url, key) is True
    assert await slow.commit(key, lost, 1_034) is False
    assert (await slow.reserve(key, 9_999, 30)).result is ReserveResult.ALREADY_USED


async def test_a_lost_lease_cannot_release_the_new_holders_lease(store: Store) -> None:
    record = make_record(single_use=True)
    key = record.key_id
    await store.put_token(record)
    lost = await reserved(store, key, 1_000)
    current = await reserved(store, key, 1_030)
    assert await store.release(key, lost) is False
    assert await store.release(key, current) is True  # the current holder still can
    await reserved(store, key, 1_031)  # and then the token is free for the next request


async def test_an_expired_lease_nobody_took_over_still_commits(
    store: Store, store_url: str
) -> None:
    # Lateness alone does not matter: the lease is still this holder's, and the
    # upstream answered, so the token is consumed rather than left reusable.
    record = make_record(single_use=True)
    await store.put_token(record)
    lease_id = await reserved(store, record.key_id, 1_000)
    assert await store.commit(record.key_id, lease_id, 5_000) is True
    assert await is_used(store_url, record.key_id) is True


async def test_fifty_concurrent_reserves_one_winner(store: Store) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    results = await asyncio.gather(*(store.reserve(record.key_id, 500, 30) for _ in range(50)))
    assert [r.result for r in results].count(ReserveResult.RESERVED) == 1
    assert [r.result for r in results].count(ReserveResult.IN_USE) == 49
    leases = [r.lease_id for r in results if r.lease_id is not None]
    assert len(leases) == 1
    assert await store.commit(record.key_id, leases[0], 501) is True


async def test_two_processes_race_for_one_token(open_stores: OpenStore, store_url: str) -> None:
    first, second = await open_stores(), await open_stores()
    record = make_record(single_use=True)
    await first.put_token(record)
    calls = [s.reserve(record.key_id, 500, 30) for _ in range(25) for s in (first, second)]
    results = await asyncio.gather(*calls)
    outcomes = [r.result for r in results]
    assert outcomes.count(ReserveResult.RESERVED) == 1
    won = outcomes.index(ReserveResult.RESERVED)
    winner, loser = (first, second) if won % 2 == 0 else (second, first)
    lease_id = results[won].lease_id
    assert lease_id is not None
    assert await loser.commit(record.key_id, b"\x00" * 16, 501) is False
    assert await winner.commit(record.key_id, lease_id, 501) is True
    for store in (first, second):
        assert await is_used(store_url, record.key_id) is True
        after = await store.reserve(record.key_id, 9_999, 30)
        assert after.result is ReserveResult.ALREADY_USED


async def test_data_survives_a_restart(open_stores: OpenStore, store_url: str) -> None:
    store = await open_stores()
    reusable, single = make_record(), make_record(single_use=True)
    await store.put_token(reusable)
    await store.put_token(single)
    assert await store.commit(single.key_id, await reserved(store, single.key_id, 10), 11)
    await store.record_settlement(
        SettledInvoice(reusable.payment_hash, reusable.route, 10_000, 7, DAY1)
    )
    await store.close()

    reopened = await open_stores()
    assert await reopened.get_root_key(reusable.key_id) == reusable.root_key
    assert await is_used(store_url, single.key_id) is True
    assert await reopened.last_settle_index() == 7
    assert await reopened.route_for_payment_hash(reusable.payment_hash) == reusable.route


async def test_closed_store_raises(open_stores: OpenStore) -> None:
    store = await open_stores()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.get_root_key(b"\x00" * 32)


async def test_check_writable(store: Store) -> None:
    await store.check_writable()
    await store.check_writable()


async def test_route_for_payment_hash(store: Store) -> None:
    record = make_record(route="ep212-expensive-signal", price_msat=250_000)
    await store.put_token(record)
    assert await store.route_for_payment_hash(record.payment_hash) == "ep212-expensive-signal"
    assert await store.route_for_payment_hash(b"\x03" * 32) is None


async def test_settlement_is_counted_once(store: Store) -> None:
    record = make_record()
    await store.put_token(record)
    assert await store.last_settle_index() == 0
    assert await store.record_settlement(
        SettledInvoice(record.payment_hash, record.route, 10_000, 5, DAY1)
    )
    assert not await store.record_settlement(
        SettledInvoice(record.payment_hash, record.route, 10_000, 5, DAY1)
    )
    report = await store.revenue_report()
    assert report == [ReportRow("2026-03-01", record.route, 1, 10_000, 0)]
    assert await store.last_settle_index() == 5


async def test_settle_index_only_moves_forward(store: Store) -> None:
    await store.record_settlement(SettledInvoice(b"\x04" * 32, "a", 1_000, 9, DAY1))
    await store.record_settlement(
        SettledInvoice(b"\x05" * 32, "a", 1_000, 4, DAY1)
    )  # replayed, older
    assert await store.last_settle_index() == 9
    await store.record_settlement(SettledInvoice(b"\x06" * 32, "a", 1_000, 12, DAY1))
    assert await store.last_settle_index() == 12


async def test_concurrent_duplicate_settlements(open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    payment_hash = b"\x07" * 32
    results = await asyncio.gather(
        *(
            s.record_settlement(SettledInvoice(payment_hash, "a", 2_000, 3, DAY1))
            for s in (first, second) * 5
        )
    )
    assert results.count(True) == 1
    assert await first.revenue_report() == [ReportRow("2026-03-01", "a", 1, 2_000, 0)]


async def test_paid_requests_accumulate_and_join_revenue(store: Store) -> None:
    await store.add_paid_requests("a", "2026-03-01", 3)
    await store.add_paid_requests("a", "2026-03-01", 2)
    await store.add_paid_requests("b", "2026-03-02", 1)
    await store.add_paid_requests("b", "2026-03-02", 0)
    await store.record_settlement(SettledInvoice(b"\x08" * 32, "a", 10_000, 1, DAY1))
    await store.record_settlement(SettledInvoice(b"\x09" * 32, "a", 10_000, 2, DAY1))
    await store.record_settlement(SettledInvoice(b"\x0a" * 32, "c", 250_000, 3, DAY2))
    assert await store.revenue_report() == [
        ReportRow("2026-03-01", "a", 2, 20_000, 5),
        ReportRow("2026-03-02", "b", 0, 0, 1),
        ReportRow("2026-03-02", "c", 1, 250_000, 0),
    ]


async def test_report_window_counts_today(store: Store) -> None:
    await store.record_settlement(SettledInvoice(b"\x0b" * 32, "a", 1_000, 1, DAY1))
    await store.record_settlement(SettledInvoice(b"\x0c" * 32, "a", 3_000, 2, DAY2))
    await store.add_paid_requests("a", "2026-02-28", 4)
    last_day = await store.revenue_report(days=1, now=DAY2)
    assert last_day == [ReportRow("2026-03-02", "a", 1, 3_000, 0)]
    assert len(await store.revenue_report(days=2, now=DAY2)) == 2
    assert len(await store.revenue_report(days=3, now=DAY2)) == 3
    with pytest.raises(ValueError, match="days"):
        await store.revenue_report(days=0)


@pytest.mark.parametrize("day", ["2026-3-1", "2026-02-30", "yesterday", ""])
async def test_paid_requests_reject_bad_days(store: Store, day: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        await store.add_paid_requests("a", day, 1)


async def test_first_token_created_at_bounds_the_settlement_catch_up(store: Store) -> None:
    assert await store.first_token_created_at() is None
    for created_at in (1_700_000_500, 1_700_000_100, 1_700_000_900):
        await store.put_token(make_record(created_at=created_at))
    assert await store.first_token_created_at() == 1_700_000_100
