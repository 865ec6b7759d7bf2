"""Freebie counters and per-credential request buckets in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.metering import parse_rate_rules
from gateway.store import Store

from .conftest import OpenStore
from .sql import fetch

NOW = 1_700_000_000
T0 = float(NOW)


async def test_allowance_counts_to_the_limit_per_key_and_period(store: Store) -> None:
    taken = [await store.take_allowance("fb:chat:a", 7, 3, expires_at=NOW) for _ in range(5)]
    assert taken == [1, 2, 3, None, None]
    assert await store.take_allowance("fb:chat:b", 7, 3, expires_at=NOW) == 1  # another client
    assert await store.take_allowance("fb:chat:a", 8, 3, expires_at=NOW) == 1  # the next period
    # A failed request gives its freebie back; there is nothing to give back past zero.
    assert await store.return_allowance("fb:chat:a", 7) is True
    assert await store.take_allowance("fb:chat:a", 7, 3, expires_at=NOW) == 3
    assert await store.return_allowance("fb:chat:none", 7) is False
    # A reload to a lower limit applies at once.
    assert await store.take_allowance("fb:chat:b", 7, 1, expires_at=NOW) is None


async def test_allowances_are_swept_when_their_period_ends(store: Store, store_url: str) -> None:
    await store.take_allowance("old", 1, 5, expires_at=NOW)
    await store.take_allowance("new", 2, 5, expires_at=NOW + 10)
    assert await store.sweep_allowances(NOW) == 1
    assert await fetch(store_url, "SELECT allowance_key FROM l402_allowances") == [("new",)]


async def test_parallel_freebies_from_two_stores_never_exceed_the_limit(
    open_stores: OpenStore,
) -> None:
    first, second = await open_stores(), await open_stores()
    calls = [
        (first if i % 2 else second).take_allowance("fb:r:c", 1, 10, expires_at=NOW)
        for i in range(40)
    ]
    results = await asyncio.gather(*calls)
    assert sorted(r for r in results if r is not None) == list(range(1, 11))
    assert results.count(None) == 30


async def test_request_buckets_all_or_none(store: Store, store_url: str) -> None:
    broad, narrow = parse_rate_rules(
        [{"requests": 60, "per": "1m", "burst": 5}, {"path": "^/x", "requests": 1, "per": "10s"}]
    )
    both = ["rl:r:broad:token:aa", "rl:r:narrow:token:aa"]
    assert await store.take_request_tokens(both, [broad, narrow], T0) is None
    assert await store.take_request_tokens(both, [broad, narrow], T0) == pytest.approx(10.0)
    # The refusal took nothing from the broad bucket: 4 of its 5 are left.
    granted = [await store.take_request_tokens(both[:1], [broad], T0) for _ in range(5)]
    assert granted == [None, None, None, None, pytest.approx(1.0)]
    assert await store.take_request_tokens(both, [broad, narrow], T0 + 10) is None
    assert await store.take_request_tokens([], [], T0) is None
    with pytest.raises(ValueError, match="distinct"):
        await store.take_request_tokens([both[0], both[0]], [broad, broad], T0)
    # Rows are swept with the challenge limiter's buckets once full again.
    assert await store.sweep_buckets(T0 + 3600) == 2
    assert await fetch(store_url, "SELECT count(*) FROM l402_rate_buckets") == [(0,)]


async def test_request_buckets_shared_by_two_stores(open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    (rule,) = parse_rate_rules([{"requests": 1, "per": "1h", "burst": 7}])
    keys = ["rl:r:x:token:bb"]
    results = await asyncio.gather(
        *((first if i % 2 else second).take_request_tokens(keys, [rule], T0) for i in range(20))
    )
    assert results.count(None) == 7
