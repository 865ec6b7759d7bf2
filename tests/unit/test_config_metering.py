"""routes.yaml: `bundle`, `rate_limits`, `freebies` and `pricing: {grpc: ...}` (issue 18).

Every error names the file, the line of the value at fault and its field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigErrors, load_config
from gateway.config.model import GatewayConfig, GrpcPricing, Route

HEAD = """\
lnd: {tls_cert: c, macaroon: m}
routes:
"""
BASE = "  - name: llm\n    path: '^/v1/'\n    upstream: 'http://up.example'\n"


def load(tmp_path: Path, body: str) -> GatewayConfig:
    path = tmp_path / "routes.yaml"
    path.write_text(HEAD + BASE + body)
    return load_config(path, check_files=False)


def errors(tmp_path: Path, body: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, body)
    return [(e.line, e.field, e.message) for e in info.value.errors]


def only_route(config: GatewayConfig) -> Route:
    (route,) = config.routes.routes
    return route


def test_a_bundle_is_the_routes_price_and_makes_it_metered(tmp_path: Path) -> None:
    route = only_route(
        load(
            tmp_path,
            "    bundle: {units: 1000000, unit: tokens, price_sats: 2000}\n"
            "    rate_limits: [{path: '^/v1/chat', requests: 5, per: 1s, burst: 10}]\n"
            "    freebies: {per_client: 3, per: day}\n",
        )
    )
    assert route.bundle is not None
    assert (route.bundle.units, route.bundle.unit, route.price_msat) == (
        1000000,
        "tokens",
        2_000_000,
    )
    assert route.metered
    assert route.reads_answers
    assert not route.is_free
    assert [(r.pattern, r.requests, r.per_seconds, r.burst) for r in route.rate_limits] == [
        ("^/v1/chat", 5, 1.0, 10)
    ]
    assert route.freebies is not None
    assert route.freebies.per_client == 3


def test_a_request_quota_reads_no_answer(tmp_path: Path) -> None:
    route = only_route(load(tmp_path, "    bundle: {units: 100, unit: requests, price_sats: 50}\n"))
    assert route.metered
    assert not route.reads_answers
    assert route.bundle is not None
    assert route.bundle.estimate == 1


def test_bundle_errors_point_at_the_value(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "    price_sats: 3\n"
        "    token_mode: per-request\n"
        "    bundle:\n"
        "      units: 10\n"
        "      unit: tokens\n"
        "      price_sats: 20\n"
        "      tail_bytes: 12\n",
    )
    assert (12, "routes[0].bundle.tail_bytes", "must be between 256 and 1048576, got 12") in found
    found = errors(
        tmp_path,
        "    price_sats: 3\n    token_mode: per-request\n"
        "    bundle: {units: 10, unit: tokens, price_sats: 20}\n",
    )
    assert [(line, field) for line, field, _ in found] == [
        (6, "routes[0].price_sats"),
        (7, "routes[0].token_mode"),
    ]
    assert errors(tmp_path, "    bundle: {units: 10, unit: images, price_sats: 2}\n") == [
        (6, "routes[0].bundle.usage_header", "required for a unit of your own (images)")
    ]
    assert errors(tmp_path, "    bundle:\n") == [
        (6, "routes[0].bundle", "expected a value; omit the key instead")
    ]


def test_rate_limit_and_freebie_errors(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "    price_sats: 1\n"
        "    rate_limits:\n"
        "      - {requests: 5, per: 1s}\n"
        "      - {requests: 5, per: forever}\n"
        "    freebies: {per_client: 3, per: month}\n",
    )
    assert found == [
        (
            9,
            "routes[0].rate_limits[1].per",
            "must be a duration such as 1s, 1m or 1h, got 'forever'",
        ),
        (10, "routes[0].freebies.per", "must be hour, day or week"),
    ]
    assert errors(tmp_path, "    price_sats: 0\n    freebies: {per_client: 1}\n") == [
        (7, "routes[0].freebies", "a free route needs no freebies")
    ]


def test_aperture_spellings_are_translated(tmp_path: Path) -> None:
    found = errors(tmp_path, "    price_sats: 1\n    ratelimits: []\n    dynamicprice: {}\n")
    assert [(f, m) for _, f, m in found] == [
        ("routes[0].ratelimits", "unknown key (Aperture's `ratelimits` is `rate_limits` here)"),
        ("routes[0].dynamicprice", "unknown key (Aperture's `dynamicprice` is `pricing` here)"),
    ]


def test_grpc_pricing(tmp_path: Path) -> None:
    route = only_route(
        load(
            tmp_path,
            "    pricing: {grpc: '127.0.0.1:10010', metered: true, max_price_sats: 5000}\n",
        )
    )
    assert isinstance(route.pricing, GrpcPricing)
    assert (route.pricing.address, route.pricing.metered, route.pricing.fallback_msat) == (
        "127.0.0.1:10010",
        True,
        None,
    )
    assert route.metered_by_pricer
    assert route.metered
    assert route.reads_answers
    plain = only_route(
        load(
            tmp_path,
            "    pricing: {grpc: 'pricer:10010', fallback_price_sats: 2, max_price_sats: 9}\n",
        )
    )
    assert isinstance(plain.pricing, GrpcPricing)
    assert not plain.metered
    assert plain.price_msat == 2000  # the fallback, as for the HTTP hook


def test_grpc_pricing_errors(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "    pricing:\n"
        "      grpc: 'no port'\n"
        "      metered: true\n"
        "      max_price_sats: 9\n"
        "      fallback_price_sats: 1\n"
        "    bundle: {units: 5, unit: requests, price_sats: 1}\n",
    )
    assert [(line, field) for line, field, _ in found] == [
        (7, "routes[0].pricing.grpc"),
        (10, "routes[0].pricing.fallback_price_sats"),
    ]
    both = errors(
        tmp_path,
        "    pricing: {grpc: 'p:1', metered: true, max_price_sats: 9}\n"
        "    bundle: {units: 5, unit: requests, price_sats: 1}\n",
    )
    assert [(line, field) for line, field, _ in both] == [(6, "routes[0].pricing")]
    assert errors(tmp_path, "    pricing: {grpc: 'p:1', max_price_sats: 9}\n") == [
        (
            6,
            "routes[0].pricing.fallback_price_sats",
            "exactly one of fallback_price_sats / fallback_price_msats is required",
        )
    ]


def test_a_bundle_is_not_sold_through_the_payment_scheme(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "    bundle: {units: 100, unit: tokens, price_sats: 10}\n    schemes: [l402, payment]\n",
    )
    assert [(line, field) for line, field, _ in found] == [(7, "routes[0].schemes")]
    assert "sold over L402 only" in found[0][2]
