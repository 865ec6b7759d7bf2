"""The per-client token bucket behind `challenge_rate_limit` (time is passed in)."""

from __future__ import annotations

import pytest

from gateway.paywall.ratelimit import TokenBucketLimiter, retry_after_seconds

T0 = 1_700_000_000.0


def drain(limiter: TokenBucketLimiter, key: str, now: float) -> int:
    """Take tokens until refused; how many were granted."""
    granted = 0
    while limiter.allow(key, now) is None:
        granted += 1
        assert granted < 10_000
    return granted


def test_a_new_client_gets_the_burst_then_waits() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=3)
    assert [limiter.allow("a", T0) for _ in range(3)] == [None, None, None]
    assert limiter.allow("a", T0) == pytest.approx(1.0)  # 60/min: one token a second
    # a refusal takes nothing: asking again at once gives the same answer
    assert limiter.allow("a", T0) == pytest.approx(1.0)


def test_refill_is_continuous_and_capped_at_burst() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=3)
    assert drain(limiter, "a", T0) == 3
    assert limiter.allow("a", T0 + 0.25) == pytest.approx(0.75)
    assert limiter.allow("a", T0 + 1.0) is None
    assert limiter.allow("a", T0 + 1.0) == pytest.approx(1.0)
    # an hour idle refills only up to the burst
    assert drain(limiter, "a", T0 + 3600) == 3


def test_slow_rates_wait_longer() -> None:
    limiter = TokenBucketLimiter(per_minute=6, burst=1)  # one token every 10 s
    assert limiter.allow("a", T0) is None
    assert limiter.allow("a", T0) == pytest.approx(10.0)
    assert limiter.allow("a", T0 + 4) == pytest.approx(6.0)
    assert limiter.allow("a", T0 + 10) is None


def test_clients_are_independent() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=2)
    assert drain(limiter, "10.0.0.1", T0) == 2
    assert limiter.allow("10.0.0.2", T0) is None
    assert limiter.allow("10.0.0.1", T0) is not None


def test_a_clock_going_backwards_refills_nothing() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=2)
    assert drain(limiter, "a", T0) == 2
    assert limiter.allow("a", T0 - 100) == pytest.approx(1.0)
    assert limiter.allow("a", T0 - 99) is None  # refill resumes from the new reading


@pytest.mark.parametrize(
    ("wait", "header"),
    [(0.0001, 1), (0.5, 1), (1.0, 1), (1.0000000001, 1), (1.2, 2), (2.0, 2), (59.01, 60)],
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(wait: float, header: int) -> None:
    assert retry_after_seconds(wait) == header


def test_retry_after_matches_the_moment_a_token_is_back() -> None:
    limiter = TokenBucketLimiter(per_minute=7, burst=1)
    assert limiter.allow("a", T0) is None
    wait = limiter.allow("a", T0 + 1.5)
    assert wait is not None
    header = retry_after_seconds(wait)
    assert header == 8  # 60/7 = 8.57 s per token, 1.5 s already passed
    assert limiter.allow("a", T0 + 1.5 + header) is None


def test_per_minute_zero_disables_and_tracks_nothing() -> None:
    limiter = TokenBucketLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.allow(f"c{i}", T0) is None for i in range(1000))
    assert len(limiter) == 0


def test_memory_is_capped_evicting_the_least_recently_seen() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=1, max_clients=3)
    for key in ("a", "b", "c"):
        assert limiter.allow(key, T0) is None
    assert limiter.allow("a", T0) is not None  # "a" is now the most recently seen
    assert limiter.allow("d", T0) is None  # evicts "b", the least recently seen
    assert len(limiter) == 3
    # eviction only makes the limiter more permissive: "b" returns with a full bucket
    assert limiter.allow("b", T0) is None  # (evicts "c")
    assert limiter.allow("a", T0) is not None  # "a" was kept and is still limited
    assert limiter.allow("c", T0) is None
    assert len(limiter) == 3


def test_reconfigure_keeps_clients_and_caps_them_at_the_new_burst() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=10)
    assert limiter.allow("a", T0) is None  # 9 left
    limiter.configure(per_minute=60, burst=2)
    assert drain(limiter, "a", T0) == 2
    limiter.configure(per_minute=0, burst=2)
    assert limiter.allow("a", T0) is None
    assert len(limiter) == 0
    limiter.configure(per_minute=60, burst=2)
    assert drain(limiter, "a", T0) == 2  # forgotten while off: a full bucket again


@pytest.mark.parametrize(
    ("per_minute", "burst", "max_clients"), [(-1, 1, 10), (60, 0, 10), (60, 1, 0)]
)
def test_bad_parameters_are_refused(per_minute: int, burst: int, max_clients: int) -> None:
    with pytest.raises(ValueError, match="must be >="):
        TokenBucketLimiter(per_minute, burst, max_clients=max_clients)
