"""TokenStore behaviour, run against real SQLite and real PostgreSQL alike."""

from __future__ import annotations

import asyncio
import calendar

import pytest

from gateway.store import ReportRow, ReserveResult, StoreError, TokenStore

from .conftest import OpenStore
from .factories import make_record

DAY1 = calendar.timegm((2026, 3, 1, 12, 0, 0))
DAY2 = calendar.timegm((2026, 3, 2, 9, 30, 0))


async def test_root_key_round_trip(store: TokenStore) -> None:
    record = make_record()
    await store.put_token(record)
    assert await store.get_root_key(record.key_id) == record.root_key
    assert await store.get_root_key(b"\x01" * 32) is None


async def test_duplicate_key_id_is_a_store_error(store: TokenStore) -> None:
    record = make_record()
    await store.put_token(record)
    with pytest.raises(StoreError) as info:
        await store.put_token(record)
    assert record.root_key.hex() not in str(info.value)


async def test_root_key_is_not_in_the_record_repr() -> None:
    record = make_record()
    assert record.root_key.hex() not in repr(record)
    assert repr(record.root_key) not in repr(record)


async def test_revoke_blanks_the_root_key(store: TokenStore) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    assert await store.revoke(record.token_id.hex()) is True
    assert await store.get_root_key(record.key_id) is None
    assert await store.revoke(record.token_id.hex()) is False  # already revoked
    assert await store.reserve(record.key_id, 100, 30) is ReserveResult.UNKNOWN


async def test_revoke_unknown_and_malformed(store: TokenStore) -> None:
    assert await store.revoke("ab" * 32) is False
    with pytest.raises(ValueError, match="hex"):
        await store.revoke("not-hex")
    with pytest.raises(ValueError, match="32 bytes"):
        await store.revoke("abcd")


async def test_reserve_commit_release_cycle(store: TokenStore) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    assert await store.reserve(record.key_id, 100, 30) is ReserveResult.RESERVED
    assert await store.reserve(record.key_id, 101, 30) is ReserveResult.IN_USE
    await store.release(record.key_id)
    assert await store.is_used(record.key_id) is False
    assert await store.reserve(record.key_id, 102, 30) is ReserveResult.RESERVED
    assert await store.commit(record.key_id, 103) is True
    assert await store.is_used(record.key_id) is True
    assert await store.reserve(record.key_id, 104, 30) is ReserveResult.ALREADY_USED
    await store.release(record.key_id)  # releasing a used token must not revive it
    assert await store.reserve(record.key_id, 105, 30) is ReserveResult.ALREADY_USED
    assert await store.commit(record.key_id, 106) is False


async def test_reserve_unknown_token(store: TokenStore) -> None:
    assert await store.reserve(b"\x02" * 32, 100, 30) is ReserveResult.UNKNOWN
    assert await store.is_used(b"\x02" * 32) is False


async def test_lease_of_a_crashed_holder_expires(store: TokenStore) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    assert await store.reserve(record.key_id, 1_000, 30) is ReserveResult.RESERVED
    # The holder never commits nor releases (it crashed): the credential stays
    # blocked until the lease runs out, then it can be used again.
    assert await store.reserve(record.key_id, 1_029, 30) is ReserveResult.IN_USE
    assert await store.reserve(record.key_id, 1_030, 30) is ReserveResult.RESERVED
    assert await store.reserve(record.key_id, 1_031, 30) is ReserveResult.IN_USE


async def test_fifty_concurrent_reserves_one_winner(store: TokenStore) -> None:
    record = make_record(single_use=True)
    await store.put_token(record)
    results = await asyncio.gather(*(store.reserve(record.key_id, 500, 30) for _ in range(50)))
    assert results.count(ReserveResult.RESERVED) == 1
    assert results.count(ReserveResult.IN_USE) == 49


async def test_two_processes_race_for_one_token(open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    record = make_record(single_use=True)
    await first.put_token(record)
    calls = [s.reserve(record.key_id, 500, 30) for _ in range(25) for s in (first, second)]
    results = await asyncio.gather(*calls)
    assert results.count(ReserveResult.RESERVED) == 1
    winner = first if results.index(ReserveResult.RESERVED) % 2 == 0 else second
    assert await winner.commit(record.key_id, 501) is True
    for store in (first, second):
        assert await store.is_used(record.key_id) is True
        assert await store.reserve(record.key_id, 9_999, 30) is ReserveResult.ALREADY_USED


async def test_data_survives_a_restart(open_stores: OpenStore) -> None:
    store = await open_stores()
    reusable, single = make_record(), make_record(single_use=True)
    await store.put_token(reusable)
    await store.put_token(single)
    await store.reserve(single.key_id, 10, 30)
    await store.commit(single.key_id, 11)
    await store.record_settlement(reusable.payment_hash, reusable.route, 10_000, 7, DAY1)
    await store.close()

    reopened = await open_stores()
    assert await reopened.get_root_key(reusable.key_id) == reusable.root_key
    assert await reopened.is_used(single.key_id) is True
    assert await reopened.last_settle_index() == 7
    assert await reopened.route_for_payment_hash(reusable.payment_hash) == reusable.route


async def test_closed_store_raises(open_stores: OpenStore) -> None:
    store = await open_stores()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.get_root_key(b"\x00" * 32)


async def test_check_writable(store: TokenStore) -> None:
    await store.check_writable()
    await store.check_writable()


async def test_route_for_payment_hash(store: TokenStore) -> None:
    record = make_record(route="ep212-expensive-signal", price_msat=250_000)
    await store.put_token(record)
    assert await store.route_for_payment_hash(record.payment_hash) == "ep212-expensive-signal"
    assert await store.route_for_payment_hash(b"\x03" * 32) is None


async def test_settlement_is_counted_once(store: TokenStore) -> None:
    record = make_record()
    await store.put_token(record)
    assert await store.last_settle_index() == 0
    assert await store.record_settlement(record.payment_hash, record.route, 10_000, 5, DAY1)
    assert not await store.record_settlement(record.payment_hash, record.route, 10_000, 5, DAY1)
    report = await store.revenue_report()
    assert report == [ReportRow("2026-03-01", record.route, 1, 10_000, 0)]
    assert await store.last_settle_index() == 5


async def test_settle_index_only_moves_forward(store: TokenStore) -> None:
    await store.record_settlement(b"\x04" * 32, "a", 1_000, 9, DAY1)
    await store.record_settlement(b"\x05" * 32, "a", 1_000, 4, DAY1)  # replayed, older
    assert await store.last_settle_index() == 9
    await store.record_settlement(b"\x06" * 32, "a", 1_000, 12, DAY1)
    assert await store.last_settle_index() == 12


async def test_concurrent_duplicate_settlements(open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    payment_hash = b"\x07" * 32
    results = await asyncio.gather(
        *(s.record_settlement(payment_hash, "a", 2_000, 3, DAY1) for s in (first, second) * 5)
    )
    assert results.count(True) == 1
    assert await first.revenue_report() == [ReportRow("2026-03-01", "a", 1, 2_000, 0)]


async def test_paid_requests_accumulate_and_join_revenue(store: TokenStore) -> None:
    await store.add_paid_requests("a", "2026-03-01", 3)
    await store.add_paid_requests("a", "2026-03-01", 2)
    await store.add_paid_requests("b", "2026-03-02", 1)
    await store.add_paid_requests("b", "2026-03-02", 0)
    await store.record_settlement(b"\x08" * 32, "a", 10_000, 1, DAY1)
    await store.record_settlement(b"\x09" * 32, "a", 10_000, 2, DAY1)
    await store.record_settlement(b"\x0a" * 32, "c", 250_000, 3, DAY2)
    assert await store.revenue_report() == [
        ReportRow("2026-03-01", "a", 2, 20_000, 5),
        ReportRow("2026-03-02", "b", 0, 0, 1),
        ReportRow("2026-03-02", "c", 1, 250_000, 0),
    ]


async def test_report_window_counts_today(store: TokenStore) -> None:
    await store.record_settlement(b"\x0b" * 32, "a", 1_000, 1, DAY1)
    await store.record_settlement(b"\x0c" * 32, "a", 3_000, 2, DAY2)
    await store.add_paid_requests("a", "2026-02-28", 4)
    last_day = await store.revenue_report(days=1, now=DAY2)
    assert last_day == [ReportRow("2026-03-02", "a", 1, 3_000, 0)]
    assert len(await store.revenue_report(days=2, now=DAY2)) == 2
    assert len(await store.revenue_report(days=3, now=DAY2)) == 3
    with pytest.raises(ValueError, match="days"):
        await store.revenue_report(days=0)


@pytest.mark.parametrize("day", ["2026-3-1", "2026-02-30", "yesterday", ""])
async def test_paid_requests_reject_bad_days(store: TokenStore, day: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        await store.add_paid_requests("a", day, 1)


async def test_first_token_created_at_bounds_the_settlement_catch_up(store: TokenStore) -> None:
    assert await store.first_token_created_at() is None
    for created_at in (1_700_000_500, 1_700_000_100, 1_700_000_900):
        await store.put_token(make_record(created_at=created_at))
    assert await store.first_token_created_at() == 1_700_000_100
