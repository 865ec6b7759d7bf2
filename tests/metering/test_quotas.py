"""Rate limits and freebies through a real store, and how they degrade when it fails."""

from __future__ import annotations

import pytest

from gateway.metering import credential_subject, parse_freebies, parse_rate_rules
from gateway.paywall.quotas import FreebieCounter, LocalRequestLimiter, SharedRequestLimiter
from gateway.store import open_store

T0 = 1_700_000_000.0
RULES = parse_rate_rules([{"path": "^/v1/", "requests": 1, "per": "1s", "burst": 2}])
SUBJECT = credential_subject("token", b"\x07" * 32)


async def test_shared_limiter_on_a_store_then_a_failing_one() -> None:
    store = await open_store("sqlite::memory:")
    limiter = SharedRequestLimiter(store)
    assert [await limiter.check("r", RULES, "/v1/x", SUBJECT, T0) for _ in range(3)] == [
        None, None, pytest.approx(1.0),
    ]  # fmt: skip
    assert await limiter.check("r", RULES, "/other", SUBJECT, T0) is None  # no rule matches
    await store.close()  # every call now fails: per-process buckets, never unlimited
    results = [await limiter.check("r", RULES, "/v1/x", SUBJECT, T0) for _ in range(3)]
    assert results[:2] == [None, None]
    assert results[2] == pytest.approx(1.0)
    assert limiter.degraded is True


async def test_local_limiter() -> None:
    limiter = LocalRequestLimiter()
    assert await limiter.check("r", RULES, "/v1/x", SUBJECT, T0) is None
    assert await limiter.check("r", RULES, "/v1/x", SUBJECT, T0) is None
    assert await limiter.check("r", RULES, "/v1/x", SUBJECT, T0) == pytest.approx(1.0)


async def test_freebies_per_client_per_day_and_fail_closed() -> None:
    store = await open_store("sqlite::memory:")
    counter = FreebieCounter(store)
    policy = parse_freebies({"per_client": 2, "per": "day", "ipv4_prefix": 24})
    first = await counter.take("chat", policy, "192.0.2.7", T0)
    second = await counter.take("chat", policy, "192.0.2.200", T0)  # same /24: same client
    assert first is not None
    assert second is not None
    assert (first.used, second.used) == (1, 2)
    assert await counter.take("chat", policy, "192.0.2.7", T0) is None
    assert await counter.take("chat", policy, "198.51.100.1", T0) is not None  # another client
    assert await counter.take("chat", policy, "192.0.2.7", T0 + 86400) is not None  # next day
    assert await counter.give_back(second) is True
    assert await counter.take("chat", policy, "192.0.2.7", T0) is not None
    await store.close()
    assert await counter.take("chat", policy, "203.0.113.1", T0) is None  # store down: no freebie
    assert await counter.give_back(second) is False
