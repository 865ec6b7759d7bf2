"""Challenge rate limits: client keys (IPv6 by prefix) and buckets shared through the store.

The bucket SQL runs on real SQLite and real PostgreSQL alike; sharing between
limiter instances is shown on one real PostgreSQL database (what replicas do).
Time is passed in, so refills need no sleeping.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.paywall.ratelimit import (
    LocalChallengeLimiter,
    SharedChallengeLimiter,
    TokenBucketLimiter,
    client_key,
)
from gateway.store import Store, open_store
from tests.support.postgres import PostgresServer

from .conftest import OpenStore
from .sql import fetch

T0 = 1_700_000_000.0


# --- client_key ---------------------------------------------------------------------------


def test_ipv4_is_keyed_by_address() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(" 192.0.2.7 ") == "192.0.2.7"
    assert client_key("192.0.2.7") != client_key("192.0.2.8")


def test_ipv6_is_keyed_by_its_64_prefix_by_default() -> None:
    hosts = [f"2001:db8:1:2::{i:x}" for i in range(1, 11)] + ["2001:db8:1:2:ffff:ffff:ffff:ffff"]
    keys = {client_key(h) for h in hosts}
    assert keys == {"2001:db8:1:2::/64"}  # ten hosts of one /64 are one client
    assert client_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"  # the next /64 is another


def test_ipv6_prefix_is_configurable() -> None:
    assert client_key("2001:db8:1:2::1", 48) == client_key("2001:db8:1:ffff::1", 48)
    assert client_key("2001:db8:1:2::1", 48) == "2001:db8:1::/48"
    assert client_key("2001:db8::1", 128) != client_key("2001:db8::2", 128)
    for bad in (0, 129, -1):
        with pytest.raises(ValueError, match=r"1\.\.128"):
            client_key("2001:db8::1", bad)


def test_mapped_bracketed_and_zoned_forms() -> None:
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"  # an IPv4 client on a dual-stack socket
    assert client_key("[2001:db8::1]") == "2001:db8::/64"
    assert client_key("fe80::1%eth0") == client_key("fe80::2") == "fe80::/64"
    assert client_key("unix-socket-peer") == "unix-socket-peer"


# --- buckets in the store (both databases) -------------------------------------------------


async def test_store_bucket_gives_burst_then_refills(store: Store) -> None:
    granted = [await store.take_token("a", T0, 60, 3) for _ in range(3)]
    assert granted == [None, None, None]
    assert await store.take_token("a", T0, 60, 3) == pytest.approx(1.0)  # 60/min: 1 a second
    assert await store.take_token("a", T0, 60, 3) == pytest.approx(1.0)  # a refusal takes nothing
    assert await store.take_token("a", T0 + 0.25, 60, 3) == pytest.approx(0.75)
    assert await store.take_token("a", T0 + 1.0, 60, 3) is None
    assert await store.take_token("b", T0 + 1.0, 60, 3) is None  # clients are independent
    # an hour idle refills only up to the burst
    assert [await store.take_token("a", T0 + 3600, 60, 3) for _ in range(4)][-1] is not None


async def test_store_bucket_clock_steps_and_reloads(store: Store) -> None:
    for _ in range(2):
        assert await store.take_token("a", T0, 6, 2) is None
    assert await store.take_token("a", T0 - 100, 6, 2) == pytest.approx(10.0)  # back: no refill
    assert await store.take_token("a", T0 + 10, 6, 2) is None
    # A reload to a lower burst caps what is left; a higher rate refills faster.
    assert await store.take_token("a", T0 + 1000, 6, 1) is None
    assert await store.take_token("a", T0 + 1000, 6, 1) == pytest.approx(10.0)
    assert await store.take_token("a", T0 + 1000, 600, 1) == pytest.approx(0.1)


async def test_sweep_deletes_only_buckets_that_are_full_again(store: Store, store_url: str) -> None:
    await store.take_token("old", T0, 60, 20)  # full again 20 s later at the latest
    await store.take_token("new", T0 + 15, 60, 20)
    assert await store.sweep_buckets(T0 + 25) == 1
    rows = await fetch(store_url, "SELECT client FROM l402_rate_buckets")
    assert rows == [("new",)]
    assert await store.take_token("old", T0 + 25, 60, 20) is None  # starts full, as before


# --- limiters --------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_two_replicas_on_one_postgres_share_one_allowance(
    postgres_server: PostgresServer,
) -> None:
    name = postgres_server.create_database()
    first = await open_store(postgres_server.url(name))
    second = await open_store(postgres_server.url(name))
    try:
        await _share_one_allowance(first, second)
    finally:
        await first.close()
        await second.close()
        postgres_server.drop_database(name)


async def _share_one_allowance(first: Store, second: Store) -> None:
    assert first.shares_rate_limits
    # A generous store deadline: this test is about sharing, and a busy machine must not
    # turn a slow answer into the (tested elsewhere) per-process fallback.
    a = SharedChallengeLimiter(first, per_minute=60, burst=10, timeout=30.0)
    b = SharedChallengeLimiter(second, per_minute=60, burst=10, timeout=30.0)
    calls = [(a if i % 2 else b).allow("203.0.113.9", T0) for i in range(30)]
    results = await asyncio.gather(*calls)
    assert results.count(None) == 10  # not 10 per replica
    assert all(r == pytest.approx(1.0) for r in results if r is not None)
    assert a.degraded is b.degraded is False
    # Another client has its own allowance on both.
    assert await b.allow("203.0.113.10", T0) is None


async def test_every_sql_store_shares_one_allowance(open_stores: OpenStore) -> None:
    """Two processes' stores on one database, SQLite file or PostgreSQL: one allowance
    (before, SQLite stores did not share and `serve --workers N` gave N allowances)."""
    await _share_one_allowance(await open_stores(), await open_stores())


async def test_a_refused_client_costs_a_read_not_a_write(store: Store, store_url: str) -> None:
    limiter = SharedChallengeLimiter(store, per_minute=60, burst=2)
    assert [await limiter.allow("a", T0) for _ in range(2)] == [None, None]
    row = "SELECT tokens, updated_at FROM l402_rate_buckets WHERE client = 'a'"
    before = await fetch(store_url, row)
    for step in range(1, 6):  # refused: no refill yet (0.1 s = a tenth of a token)
        assert await limiter.allow("a", T0 + step * 0.1) is not None
    assert await fetch(store_url, row) == before  # nothing was written
    assert await store.bucket_wait("a", T0 + 0.5, 60, 2) == pytest.approx(0.5)
    assert await store.bucket_wait("new", T0, 60, 2) is None  # no row: a full bucket
    assert await limiter.allow("a", T0 + 1.0) is None  # a token again: taken, written
    assert await fetch(store_url, row) != before


async def test_a_failing_store_falls_back_to_a_local_bucket() -> None:
    store = await open_store("sqlite::memory:")
    limiter = SharedChallengeLimiter(store, per_minute=60, burst=2)
    assert await limiter.allow("a", T0) is None
    await store.close()  # every store call now raises StoreError
    assert [await limiter.allow("a", T0) for _ in range(3)][-1] == pytest.approx(1.0)
    assert limiter.degraded is True  # limited per process, never unlimited


async def test_disabled_and_local_limiters() -> None:
    store = await open_store("sqlite::memory:")
    try:
        off = SharedChallengeLimiter(store, per_minute=0, burst=1)
        assert not off.enabled
        assert [await off.allow("a", T0) for _ in range(50)] == [None] * 50
        local = LocalChallengeLimiter(60, 1)
        assert await local.allow("a", T0) is None
        assert await local.allow("a", T0) == pytest.approx(1.0)
        local.configure(0, 1)
        assert await local.allow("a", T0) is None
        assert isinstance(local.buckets, TokenBucketLimiter)
    finally:
        await store.close()


async def test_a_limit_turned_off_and_on_again_forgets_every_client(store: Store) -> None:
    """As the per-process buckets do: `per_minute: 0` then a limit again starts clients full,
    without touching the per-credential request limits sharing the table (`rl:` keys)."""
    limiter = SharedChallengeLimiter(store, per_minute=60, burst=1)
    assert await limiter.allow("a", T0) is None
    assert await limiter.allow("a", T0) is not None
    await store.take_token("rl:kept", T0, 60, 1)
    limiter.configure(0, 1)
    assert await limiter.allow("a", T0) is None  # off
    limiter.configure(60, 1)
    assert await limiter.allow("a", T0) is None  # forgotten: a full bucket again
    assert await limiter.allow("a", T0) is not None
    assert await store.bucket_wait("rl:kept", T0, 60, 1) is not None  # not forgotten
