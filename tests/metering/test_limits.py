"""Rate-limit rules (Aperture's `ratelimits`) and freebie periods, as pure functions of time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.metering import (
    FreebiePolicy,
    FreebiesError,
    LimitsError,
    LocalRateLimiter,
    RateRule,
    bucket_key,
    client_subject,
    credential_subject,
    parse_freebies,
    parse_rate_rules,
    retry_after,
)
from gateway.metering.limits import parse_duration, take_all

T0 = 1_700_000_000.0


def test_parse_rules_like_aperture() -> None:
    rules = parse_rate_rules(
        [
            {"path": "^/v1/chat/", "requests": 5, "per": "1s", "burst": 100},
            {"path": "^/v1/embed", "requests": 2, "per": "1m"},
            {"requests": 1, "per": "1h30m"},
        ]
    )
    assert rules[0] == RateRule("^/v1/chat/", 5, 1.0, 100)
    assert rules[1].burst == 2
    assert rules[1].rate == pytest.approx(2 / 60)
    assert rules[2].per_seconds == 5400
    assert rules[2].matches("/anything")
    assert rules[0].matches("/v1/chat/completions")
    assert not rules[0].matches("/v1/embed")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"requests": 0, "per": "1s"}, "rate_limits[0].requests"),
        ({"requests": 1}, "rate_limits[0].per"),
        ({"requests": 1, "per": "1d"}, "rate_limits[0].per"),
        ({"requests": 1, "per": "0s"}, "rate_limits[0].per"),
        ({"requests": 1, "per": "1s", "burst": 0}, "rate_limits[0].burst"),
        ({"requests": 1, "per": "1s", "path": "("}, "rate_limits[0].path"),
        ({"requests": 1, "per": "1s", "pathregexp": "^/"}, "rate_limits[0].pathregexp"),
    ],
)
def test_rule_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(LimitsError) as info:
        parse_rate_rules([raw])
    assert info.value.field == field


def test_durations() -> None:
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("1m30s") == 90
    assert parse_duration(2) == 2.0
    for bad in ("", "1", "s", "1 s", True, "-1s"):
        with pytest.raises(LimitsError):
            parse_duration(bad)


def test_burst_then_refill_and_retry_after() -> None:
    limiter = LocalRateLimiter()
    rules = parse_rate_rules([{"requests": 2, "per": "1s", "burst": 3}])
    subject = credential_subject("token", b"\x01" * 32)
    assert [limiter.check("chat", rules, "/", subject, T0) for _ in range(3)] == [None] * 3
    wait = limiter.check("chat", rules, "/", subject, T0)
    assert wait == pytest.approx(0.5)
    assert retry_after(wait or 0) == 1
    assert limiter.check("chat", rules, "/", subject, T0 + 0.5) is None
    # Another credential, or an unauthenticated client, has buckets of its own.
    assert limiter.check("chat", rules, "/", client_subject("192.0.2.1"), T0) is None


def test_all_matching_rules_or_none() -> None:
    limiter = LocalRateLimiter()
    rules = parse_rate_rules(
        [{"requests": 100, "per": "1s"}, {"path": "^/slow", "requests": 1, "per": "10s"}]
    )
    s = "token:aa"
    assert limiter.check("r", rules, "/slow", s, T0) is None
    assert limiter.check("r", rules, "/slow", s, T0) == pytest.approx(10.0)
    # The refusal took nothing from the broad rule: 99 more pass on other paths.
    assert [limiter.check("r", rules, "/fast", s, T0) for _ in range(99)] == [None] * 99
    assert limiter.check("r", rules, "/fast", s, T0) is not None
    assert limiter.check("r", [], "/fast", s, T0) is None  # no rule, no limit


def test_bucket_keys_are_per_route_rule_and_subject() -> None:
    a, b = parse_rate_rules(
        [{"path": "^/a", "requests": 1, "per": "1s"}, {"path": "^/b", "requests": 1, "per": "1s"}]
    )
    same_pattern = parse_rate_rules([{"path": "^/a", "requests": 9, "per": "1m"}])[0]
    assert bucket_key("r", a, "ip:x") != bucket_key("r", b, "ip:x")
    assert bucket_key("r", a, "ip:x") == bucket_key("r", same_pattern, "ip:x")
    assert bucket_key("r", a, "ip:x").startswith("rl:r:")
    with pytest.raises(ValueError, match="kind"):
        credential_subject("macaroon", b"x")


@given(
    times=st.lists(st.floats(0, 100), min_size=1, max_size=60),
    requests=st.integers(1, 10),
    per=st.floats(0.1, 10),
    burst=st.integers(1, 10),
)
def test_never_more_than_burst_plus_refill(
    times: list[float], requests: int, per: float, burst: int
) -> None:
    rule = RateRule(None, requests, per, burst)
    limiter = LocalRateLimiter()
    ordered = sorted(T0 + t for t in times)
    granted = sum(limiter.check("r", [rule], "/", "s", t) is None for t in ordered)
    span = ordered[-1] - ordered[0]
    assert granted <= burst + span * rule.rate + 1e-6
    assert granted >= 1


def test_clock_going_back_refills_nothing() -> None:
    rule = RateRule(None, 1, 1.0, 1)
    assert take_all([None], [rule], T0).wait is None
    state = take_all([None], [rule], T0).states[0]
    assert take_all([state], [rule], T0 - 50).wait == pytest.approx(1.0)


# --- freebies --------------------------------------------------------------------------


def test_freebie_policy_periods_and_clients() -> None:
    daily = parse_freebies({"per_client": 5})
    assert daily == FreebiePolicy(5, "day", 32, 64)
    assert daily.period(86400 * 3 + 5) == 3
    assert daily.period_end(86400 * 3 + 5) == 86400 * 4
    weekly = parse_freebies({"per_client": 1, "per": "week"})
    monday = 4 * 86400  # 1970-01-05 was a Monday
    assert weekly.period(monday - 1) != weekly.period(monday) == weekly.period(monday + 6 * 86400)
    assert weekly.period_end(monday) == monday + 7 * 86400
    aperture = parse_freebies({"per_client": 3, "ipv4_prefix": 24, "ipv6_prefix": 48})
    assert aperture.client("192.0.2.77") == aperture.client("192.0.2.1") == "192.0.2.0/24"
    assert aperture.client("2001:db8:1:ffff::1") == "2001:db8:1::/48"
    assert daily.client("::ffff:192.0.2.7") == "192.0.2.7/32"
    assert daily.client("unix-peer") == "unix-peer"
    assert daily.key("chat", "192.0.2.7") == "fb:chat:192.0.2.7/32"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "per_client"),
        ({"per_client": 0}, "per_client"),
        ({"per_client": 1, "per": "month"}, "per"),
        ({"per_client": 1, "ipv4_prefix": 33}, "ipv4_prefix"),
        ({"per_client": 1, "n": 1}, "n"),
    ],
)
def test_freebie_errors(raw: dict[str, object], field: str) -> None:
    with pytest.raises(FreebiesError) as info:
        parse_freebies(raw)
    assert info.value.field == field
