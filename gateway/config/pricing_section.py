"""A route's `pricing:` section (a dynamic price from the operator's service) -> PricingHook.

The hook is trusted: it is the operator's own service, on a private network,
and it decides what buyers are charged. What the loader guards against is
configuration that would leak secrets to it or hold requests hostage: the URL
may carry no credentials, query or fragment (like `upstream`), only a bounded
set of named request headers is sent and never a credential header, and the
deadline is short and bounded.
"""

from __future__ import annotations

import yaml

from gateway.config.model import GrpcPricing, PricingHook
from gateway.config.nodes import Section, is_null, parse_host_port
from gateway.l402.grammar import CREDENTIAL_HEADERS, is_token

PRICING_KEYS = frozenset(
    {
        "url",
        "timeout_seconds",
        "fallback_price_sats",
        "fallback_price_msats",
        "max_price_sats",
        "max_price_msats",
        "headers",
    }
)
# `pricing: {grpc: host:port, ...}`: an Aperture pricer (pricesrpc) instead of the HTTP hook.
GRPC_PRICING_KEYS = frozenset(
    {
        "grpc",
        "tls_cert",
        "metered",
        "timeout_seconds",
        "report_timeout_seconds",
        "fallback_price_sats",
        "fallback_price_msats",
        "max_price_sats",
        "max_price_msats",
    }
)
MAX_REPORT_TIMEOUT_SECONDS = 60.0
MAX_HOOK_HEADERS = 16
MAX_TIMEOUT_SECONDS = 10.0
# Secrets a hook has no business seeing, besides every L402 credential header.
SECRET_HEADERS = CREDENTIAL_HEADERS | {"cookie", "proxy-authorization"}
MAX_PRICE_MSAT = 21_000_000 * 100_000_000 * 1000


def _is_grpc(node: object) -> bool:
    return isinstance(node, yaml.MappingNode) and any(
        getattr(k, "value", None) == "grpc" for k, _ in node.value
    )


def parse_pricing(route: Section) -> PricingHook | GrpcPricing | None:
    """None when the route has no `pricing:` (or a broken one, after recording errors)."""
    node = route.get("pricing")
    if node is not None and is_null(node):  # never silently a free route
        route.reader.error(node, route.path("pricing"), "expected a mapping")
    if _is_grpc(node):
        return _parse_grpc(route, node)
    s = Section.of(route.reader, node, route.path("pricing"), PRICING_KEYS)
    if s is None:
        return None
    errors_before = len(s.reader.errors)
    url = s.http_url("url")
    timeout = s.positive_number("timeout_seconds", PricingHook.timeout_seconds)
    if timeout > MAX_TIMEOUT_SECONDS:
        node = s.get("timeout_seconds") or s.node
        s.reader.error(
            node, s.path("timeout_seconds"), f"at most {MAX_TIMEOUT_SECONDS:g} (it delays a 402)"
        )
    fallback = _amount(s, "fallback_price", required=True)
    maximum = _amount(s, "max_price", required=True)
    if fallback and maximum and fallback > maximum:
        node = s.get("fallback_price_sats") or s.get("fallback_price_msats") or s.node
        s.reader.error(node, s.path("fallback_price_msats"), "larger than the max price")
    headers = _header_names(s)
    if len(s.reader.errors) != errors_before:
        return None
    return PricingHook(url, fallback, maximum, timeout, headers)


def _parse_grpc(route: Section, node: yaml.Node | None) -> GrpcPricing | None:
    """`pricing: {grpc: host:port, tls_cert, metered, timeout_seconds, ...}`."""
    s = Section.of(route.reader, node, route.path("pricing"), GRPC_PRICING_KEYS)
    if s is None:
        return None
    errors_before = len(s.reader.errors)
    address = s.reader.interpolate(s.get("grpc") or s.node, s.path("grpc"), s.string("grpc", ""))
    try:
        parse_host_port(address)
    except ValueError as exc:
        s.reader.error(s.get("grpc") or s.node, s.path("grpc"), f"expected host:port: {exc}")
    tls_text = s.opt_string("tls_cert")
    tls_node = s.get("tls_cert")
    tls = None
    if tls_text is not None and tls_node is not None:
        tls = s.reader.file_path(tls_node, s.path("tls_cert"), tls_text)
    metered = s.boolean("metered", GrpcPricing.metered)
    timeout = s.positive_number("timeout_seconds", GrpcPricing.timeout_seconds)
    if timeout > MAX_TIMEOUT_SECONDS:
        s.reader.error(
            s.get("timeout_seconds") or s.node,
            s.path("timeout_seconds"),
            f"at most {MAX_TIMEOUT_SECONDS:g} (it delays a 402 and every paid request)",
        )
    report = s.positive_number("report_timeout_seconds", GrpcPricing.report_timeout_seconds)
    if report > MAX_REPORT_TIMEOUT_SECONDS:
        s.reader.error(
            s.get("report_timeout_seconds") or s.node,
            s.path("report_timeout_seconds"),
            f"at most {MAX_REPORT_TIMEOUT_SECONDS:g}",
        )
    maximum = _amount(s, "max_price", required=True)
    fallback: int | None = None
    if metered:
        for key in ("fallback_price_sats", "fallback_price_msats"):
            if s.has(key):
                s.reader.error(
                    s.get(key) or s.node,
                    s.path(key),
                    "a metered pricer books what it prices: no fallback price "
                    "(a pricer that is down answers 503)",
                )
    else:
        fallback = _amount(s, "fallback_price", required=True)
        if fallback and maximum and fallback > maximum:
            where = s.get("fallback_price_sats") or s.get("fallback_price_msats") or s.node
            s.reader.error(where, s.path("fallback_price_msats"), "larger than the max price")
    if len(s.reader.errors) != errors_before:
        return None
    return GrpcPricing(
        address=address,
        max_msat=maximum,
        fallback_msat=fallback,
        metered=metered,
        tls_cert=tls,
        timeout_seconds=timeout,
        report_timeout_seconds=report,
    )


def route_price(route: Section, hook: PricingHook | GrpcPricing | None) -> int:
    """A hooked route's `price_msat` is its fallback (a metered pricer's: its maximum, never
    charged as such); a constant price beside a hook would be ambiguous."""
    for key in ("price_sats", "price_msats"):
        if route.has(key):
            route.reader.error(
                route.get(key) or route.node,
                route.path(key),
                "a route with `pricing` takes its fallback from pricing.fallback_price_*",
            )
    if hook is None:
        return 0
    return hook.fallback_msat if hook.fallback_msat is not None else hook.max_msat


def _amount(s: Section, stem: str, *, required: bool) -> int:
    """`<stem>_sats` or `<stem>_msats`, exactly one, in msat, at least 1 msat."""
    sats, msats = f"{stem}_sats", f"{stem}_msats"
    has_sats, has_msats = s.has(sats), s.has(msats)
    if has_sats and has_msats:
        s.reader.error(s.get(msats) or s.node, s.path(sats), f"only one of {sats} / {msats}")
        return 0
    if not has_sats and not has_msats:
        if required:
            s.reader.error(s.node, s.path(sats), f"exactly one of {sats} / {msats} is required")
        return 0
    key = sats if has_sats else msats
    value = s.integer(key, 0, minimum=1)
    price = value * 1000 if has_sats else value
    if price > MAX_PRICE_MSAT:
        s.reader.error(s.get(key) or s.node, s.path(key), "larger than all bitcoin")
        return 0
    return price


def _header_names(s: Section) -> tuple[str, ...]:
    items = s.string_list("headers")
    if items is None:
        return ()
    names: list[str] = []
    for index, (name, node) in enumerate(items):
        field = f"{s.path('headers')}[{index}]"
        lowered = name.lower()
        if not is_token(name):
            s.reader.error(node, field, "not a valid header name")
        elif lowered in SECRET_HEADERS:
            s.reader.error(node, field, "a credential header is never sent to the hook")
        elif lowered in names:
            s.reader.error(node, field, "duplicate header")
        else:
            names.append(lowered)
    if len(items) > MAX_HOOK_HEADERS:
        s.reader.error(
            s.get("headers") or s.node,
            s.path("headers"),
            f"at most {MAX_HOOK_HEADERS} header names",
        )
    return tuple(names)
