"""A route's `bundle:`, `rate_limits:` and `freebies:` sections -> the meter's terms.

The rules themselves live beside the meter (gateway.metering: `parse_bundle`,
`parse_rate_rules`, `parse_freebies`, stdlib only, shared with tests and the
converter); this module turns the YAML nodes into the plain values those
parsers take and puts each of their errors on the line of the value it names
(`routes.yaml:14: routes[2].bundle.units: must be between 1 and ...`).

Cross-field rules of a metered route are checked here too: a bundle is the
route's price (no `price_sats` beside it), sells reusable tokens, and is not
combined with a pricer (a pricer that keeps bundles is `pricing: {grpc: ...,
metered: true}`); freebies make sense only on a priced route.
"""

from __future__ import annotations

import re

import yaml

from gateway.config.model import Route, TokenMode
from gateway.config.nodes import Reader, Section, is_null
from gateway.metering.freebies import FreebiePolicy, FreebiesError, parse_freebies
from gateway.metering.limits import LimitsError, RateRule, parse_rate_rules
from gateway.metering.terms import BundleTerms, TermsError, parse_bundle

METERING_KEYS = frozenset({"bundle", "rate_limits", "freebies"})
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def plain(reader: Reader, node: yaml.Node, field: str) -> tuple[bool, object]:
    """The node as plain Python values (dicts, lists, scalars); (False, None) after an error."""
    if isinstance(node, yaml.MappingNode):
        out: dict[object, object] = {}
        for key_node, value_node in node.value:
            ok, key = reader.scalar(key_node, field)
            if not ok:
                return False, None
            if not isinstance(key, str):
                reader.error(key_node, f"{field}.{key}", "keys must be strings")
                return False, None
            if key in out:
                reader.error(key_node, f"{field}.{key}", "duplicate key")
                return False, None
            ok, value = plain(reader, value_node, f"{field}.{key}")
            if not ok:
                return False, None
            out[key] = value
        return True, out
    if isinstance(node, yaml.SequenceNode):
        items: list[object] = []
        for index, item in enumerate(node.value):
            ok, value = plain(reader, item, f"{field}[{index}]")
            if not ok:
                return False, None
            items.append(value)
        return True, items
    return reader.scalar(node, field)


def node_at(node: yaml.Node, relative: str) -> yaml.Node:
    """The node a parser's field path (`units`, `[1].per`) points at, as deep as it exists."""
    for name, index in _STEP.findall(relative):
        if name and isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == name), None)
            if found is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == name), None)
                return key if key is not None else node
            node = found
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            return node
    return node


def _section(route: Section, key: str) -> tuple[yaml.Node, object] | None:
    node = route.get(key)
    if node is None:
        return None
    if is_null(node):
        route.reader.error(node, route.path(key), "expected a value; omit the key instead")
        return None
    ok, value = plain(route.reader, node, route.path(key))
    return (node, value) if ok else None


def parse_bundle_section(route: Section) -> BundleTerms | None:
    found = _section(route, "bundle")
    if found is None:
        return None
    node, value = found
    if not isinstance(value, dict):
        route.reader.error(node, route.path("bundle"), "expected a mapping")
        return None
    try:
        return parse_bundle(value)
    except TermsError as exc:
        route.reader.error(
            node_at(node, exc.field), f"{route.path('bundle')}.{exc.field}", exc.message
        )
        return None


def parse_rate_limits_section(route: Section) -> tuple[RateRule, ...]:
    found = _section(route, "rate_limits")
    if found is None:
        return ()
    node, value = found
    try:
        return parse_rate_rules(value, "")
    except LimitsError as exc:
        relative = exc.field.lstrip(".")
        route.reader.error(
            node_at(node, relative), route.path("rate_limits") + relative, exc.message
        )
        return ()


def parse_freebies_section(route: Section) -> FreebiePolicy | None:
    found = _section(route, "freebies")
    if found is None:
        return None
    node, value = found
    try:
        return parse_freebies(value)
    except FreebiesError as exc:
        route.reader.error(
            node_at(node, exc.field), f"{route.path('freebies')}.{exc.field}", exc.message
        )
        return None


def bundle_price(route: Section, bundle: BundleTerms | None) -> int | None:
    """A bundle route's price is the bundle's: a route-level price beside it is ambiguous."""
    if bundle is None:
        return None
    for key in ("price_sats", "price_msats"):
        if route.has(key):
            route.reader.error(
                route.get(key) or route.node,
                route.path(key),
                "a route with `bundle` is priced by bundle.price_sats / bundle.price_msats",
            )
    return bundle.price_msat


def check_metering(route: Section, parsed: Route) -> None:
    """Cross-field rules of metered routes (see the module docstring)."""
    error = route.reader.error
    if parsed.bundle is not None:
        if parsed.token_mode is TokenMode.PER_REQUEST:
            error(
                route.get("token_mode") or route.node,
                route.path("token_mode"),
                "a bundle is drawn down by many requests: token_mode must be reusable",
            )
        if parsed.pricing is not None:
            error(
                route.get("pricing") or route.node,
                route.path("pricing"),
                "a bundle has its own price; for bundles kept by a pricer use "
                "pricing: {grpc: ..., metered: true} without `bundle`",
            )
    if parsed.metered_by_pricer and parsed.token_mode is TokenMode.PER_REQUEST:
        error(
            route.get("token_mode") or route.node,
            route.path("token_mode"),
            "a metered pricer's bundle is drawn down by many requests: token_mode must be reusable",
        )
    if parsed.freebies is not None and parsed.is_free:
        error(
            route.get("freebies") or route.node,
            route.path("freebies"),
            "a free route needs no freebies",
        )
    if parsed.metered and "payment" in parsed.schemes:
        error(
            route.get("schemes") or route.node,
            route.path("schemes"),
            "a metered bundle is sold over L402 only (a Payment-scheme session is itself a "
            "prepaid balance): remove payment, or sell the route by request",
        )
