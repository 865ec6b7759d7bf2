"""Parsing and cross-checking of the `routes:` list.

Each route is validated on its own (regexes, upstream URL, price, token policy),
then the table as a whole: unique names, and no route that can never match
because an earlier route already catches everything it would.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.config.cors import parse_cors
from gateway.config.model import EMBEDDED_UPSTREAM, PathRewrite, Route, TokenMode
from gateway.config.nodes import Reader, Section, is_null
from gateway.config.payment_section import parse_schemes
from gateway.config.pricing_section import parse_pricing, route_price
from gateway.http.headerpolicy import extra_header_problem
from gateway.l402.grammar import is_token

ROUTE_KEYS = frozenset(
    {
        "name", "host", "path", "methods", "upstream", "upstream_tls_verify",
        "upstream_ca_file", "upstream_timeout_seconds", "upstream_headers", "path_rewrite",
        "price_sats", "price_msats", "token_validity_seconds", "token_mode", "capabilities",
        "required_capability", "forward_authorization", "max_body_bytes", "invoice_memo",
        "invoice_expiry_seconds", "private_invoices", "service", "request_body_timeout_seconds",
        "cors", "pricing", "schemes", "allow_path_parameters", "allow_encoded_percent",
        "case_insensitive",
    }
)  # fmt: skip
# Keys that only mean something when the gateway proxies; embedded, the app answers itself.
_NO_UPSTREAM = "proxy-only: embedded, the app answers itself (there is no upstream)"
PROXY_ONLY_ROUTE_KEYS = {
    "upstream": _NO_UPSTREAM,
    "upstream_tls_verify": _NO_UPSTREAM,
    "upstream_ca_file": _NO_UPSTREAM,
    "upstream_headers": _NO_UPSTREAM,
    "path_rewrite": _NO_UPSTREAM,
    "forward_authorization": "proxy-only: embedded, the app sees the request's own headers",
    "max_body_bytes": "proxy-only: embedded, the app reads and bounds its own bodies",
    "cors": "proxy-only: embedded, use the app's own CORS middleware",
}
PROXY_ONLY_TOP_KEYS = {
    "listen": "proxy-only: embedded, the app's server listens",
    "cors": "proxy-only: embedded, use the app's own CORS middleware",
    "admin": "proxy-only: embedded, the admin API belongs to the gateway process",
    "discovery": "proxy-only: embedded, the app serves its own documents",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CAPABILITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SERVICE = re.compile(r"[A-Za-z0-9._-]+")  # what a services= caveat can carry
# Path patterns that match every request path under `re.search` (documented rule).
CATCH_ALL = frozenset({"", "^", "/", "^/", ".*", "^.*", "^.*$", "^/.*", "^/.*$", ".*$", ".+"})
_MAX_PRICE_MSAT = 21_000_000 * 100_000_000 * 1000


def parse_routes(
    reader: Reader, node: yaml.Node | None, top: yaml.Node, *, embedded: bool = False
) -> tuple[Route, ...]:
    """`embedded`: routes for the embedded middleware, with no upstream (EMBEDDED_UPSTREAM)."""
    if node is None or is_null(node):
        reader.error(top, "routes", "required key is missing")
        return ()
    if not isinstance(node, yaml.SequenceNode):
        reader.error(node, "routes", "expected a list of routes")
        return ()
    if not node.value:
        reader.error(node, "routes", "at least one route is required")
    routes = []
    for index, item in enumerate(node.value):
        section = Section.of(reader, item, f"routes[{index}]", ROUTE_KEYS)
        if section is None:
            if is_null(item):
                reader.error(item, f"routes[{index}]", "expected a mapping")
            continue
        if embedded:
            section.refuse(PROXY_ONLY_ROUTE_KEYS)
        route = _parse_route(section, embedded)
        if route is not None:
            routes.append(route)
            _check_table(reader, routes, section)
    return tuple(routes)


def _regex(section: Section, key: str, *, required: bool, flags: int = 0) -> re.Pattern[str] | None:
    text = section.string(key, "", required=required) if required else section.opt_string(key)
    if text is None or (required and not section.has(key)):
        return None
    try:
        return re.compile(text, flags)
    except re.error as exc:
        section.reader.error(
            section.get(key) or section.node, section.path(key), f"bad regex: {exc}"
        )
        return None


def _parse_route(s: Section, embedded: bool) -> Route | None:
    r = s.reader
    errors_before = len(r.errors)
    name = s.string("name", "", required=True)
    if s.has("name") and name and _NAME.fullmatch(name) is None:
        r.error(s.get("name") or s.node, s.path("name"), "must match [a-z0-9][a-z0-9_-]*")
    case_insensitive = s.boolean("case_insensitive", Route.case_insensitive)
    path = _regex(s, "path", required=True, flags=re.IGNORECASE if case_insensitive else 0)
    # Host names are case-insensitive (RFC 4343): requests' are lower-cased before matching.
    host = _regex(s, "host", required=False, flags=re.IGNORECASE)
    if host is not None and host.pattern in CATCH_ALL:
        host = None
    pricing = parse_pricing(s)
    price_msat = route_price(s, pricing) if s.has("pricing") else _price(s)
    route = Route(
        name=name,
        path=path or re.compile(""),
        host=host,
        methods=_methods(s),
        upstream=(
            EMBEDDED_UPSTREAM
            if embedded
            else s.http_url("upstream", credentials_hint="; use upstream_headers")
        ),
        price_msat=price_msat,
        upstream_tls_verify=s.boolean("upstream_tls_verify", Route.upstream_tls_verify),
        upstream_ca_file=_ca_file(s),
        upstream_timeout_seconds=s.positive_number(
            "upstream_timeout_seconds", Route.upstream_timeout_seconds
        ),
        request_body_timeout_seconds=s.positive_number(
            "request_body_timeout_seconds", Route.request_body_timeout_seconds
        ),
        upstream_headers=_headers(s),
        path_rewrite=_rewrite(s),
        token_validity_seconds=s.opt_integer("token_validity_seconds", None, minimum=1),
        token_mode=_token_mode(s),
        capabilities=_capabilities(s),
        required_capability=s.opt_string("required_capability"),
        forward_authorization=s.boolean("forward_authorization", Route.forward_authorization),
        max_body_bytes=s.integer("max_body_bytes", Route.max_body_bytes, minimum=0),
        invoice_memo=s.string("invoice_memo", ""),  # Route.memo supplies the default
        invoice_expiry_seconds=s.integer(
            "invoice_expiry_seconds", Route.invoice_expiry_seconds, minimum=1
        ),
        private_invoices=s.boolean("private_invoices", Route.private_invoices),
        service_name=_service(s),
        cors=parse_cors(s.reader, s.get("cors"), s.path("cors")),
        pricing=pricing,
        schemes=parse_schemes(s),
        allow_path_parameters=s.boolean("allow_path_parameters", Route.allow_path_parameters),
        allow_encoded_percent=s.boolean("allow_encoded_percent", Route.allow_encoded_percent),
        case_insensitive=case_insensitive,
        line=s.node.start_mark.line + 1,
    )
    _check_policy(s, route)
    return route if len(r.errors) == errors_before else None


def _service(s: Section) -> str | None:
    """Aperture's service name, when it differs from the route name (imported tokens)."""
    text = s.opt_string("service")
    if text is None:
        return None
    if _SERVICE.fullmatch(text) is None:
        s.reader.error(s.get("service") or s.node, s.path("service"), "must match [A-Za-z0-9._-]+")
        return None
    return text


def _price(s: Section) -> int:
    has_sats, has_msats = s.has("price_sats"), s.has("price_msats")
    if has_sats == has_msats:
        where = s.get("price_msats") if has_msats else s.node
        what = "only one of" if has_sats else "exactly one of"
        s.reader.error(where or s.node, s.path("price_sats"), f"{what} price_sats / price_msats")
        return 0
    if has_sats:
        price = s.integer("price_sats", 0, minimum=0) * 1000
    else:
        price = s.integer("price_msats", 0, minimum=0)
    if price > _MAX_PRICE_MSAT:
        key = "price_sats" if has_sats else "price_msats"
        s.reader.error(s.get(key) or s.node, s.path(key), "larger than all bitcoin")
    return price


def _methods(s: Section) -> frozenset[str] | None:
    items = s.string_list("methods")
    if items is None:
        return None
    methods = set()
    for index, (method, node) in enumerate(items):
        if not is_token(method):
            s.reader.error(node, f"{s.path('methods')}[{index}]", "not an HTTP method")
        methods.add(method.upper())
    if not items:
        s.reader.error(s.get("methods") or s.node, s.path("methods"), "empty list; omit for any")
    return frozenset(methods)


def _ca_file(s: Section) -> Path | None:
    text = s.opt_string("upstream_ca_file")
    node = s.get("upstream_ca_file")
    if text is None or node is None:
        return None
    return s.reader.file_path(node, s.path("upstream_ca_file"), text)


def _headers(s: Section) -> tuple[tuple[str, str], ...]:
    node = s.get("upstream_headers")
    if node is None or is_null(node):
        return ()
    if not isinstance(node, yaml.MappingNode):
        s.reader.error(node, s.path("upstream_headers"), "expected a mapping")
        return ()
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key_node, value_node in node.value:
        ok, key = s.reader.scalar(key_node, s.path("upstream_headers"))
        field = f"{s.path('upstream_headers')}.{key}"
        if not ok:
            continue
        if not isinstance(key, str) or not is_token(key):
            s.reader.error(key_node, field, "not a valid header name")
            continue
        if key.lower() in seen:
            s.reader.error(key_node, field, "duplicate header")
        # Authorization vs forward_authorization is checked once the route is complete.
        problem = extra_header_problem(key, forwards_authorization=False)
        if problem is not None:
            s.reader.error(key_node, field, problem)
        seen.add(key.lower())
        ok, value = s.reader.scalar(value_node, field)
        if ok and not isinstance(value, str):
            s.reader.error(value_node, field, "expected a string (quote numbers)")
        elif ok and isinstance(value, str):
            value = s.reader.interpolate(value_node, field, value)
            if "\r" in value or "\n" in value or "\0" in value:
                s.reader.error(value_node, field, "header value contains a line break")
            headers.append((key, value))
    return tuple(headers)


def _rewrite(s: Section) -> PathRewrite | None:
    keys = frozenset({"pattern", "replacement"})
    sub = Section.of(s.reader, s.get("path_rewrite"), s.path("path_rewrite"), keys)
    if sub is None:
        return None
    pattern = _regex(sub, "pattern", required=True)
    replacement = sub.string("replacement", "", required=True)
    if pattern is None:
        return None
    try:
        pattern.sub(replacement, "")  # Python parses the template eagerly
    except (re.error, IndexError) as exc:
        where = sub.get("replacement") or sub.node
        s.reader.error(where, sub.path("replacement"), f"bad replacement: {exc}")
        return None
    return PathRewrite(pattern, replacement)


def _token_mode(s: Section) -> TokenMode:
    text = s.string("token_mode", Route.token_mode.value)
    try:
        return TokenMode(text)
    except ValueError:
        allowed = " | ".join(m.value for m in TokenMode)
        s.reader.error(s.get("token_mode") or s.node, s.path("token_mode"), f"must be {allowed}")
        return TokenMode.REUSABLE


def _capabilities(s: Section) -> tuple[str, ...]:
    items = s.string_list("capabilities") or []
    caps: list[str] = []
    for index, (cap, node) in enumerate(items):
        field = f"{s.path('capabilities')}[{index}]"
        if _CAPABILITY.fullmatch(cap) is None:
            s.reader.error(node, field, "must match [A-Za-z0-9][A-Za-z0-9_.-]*")
        elif cap in caps:
            s.reader.error(node, field, "duplicate capability")
        caps.append(cap)
    return tuple(caps)


def _check_policy(s: Section, route: Route) -> None:
    """Cross-field rules inside one route."""
    required = route.required_capability
    if required is not None and required not in route.capabilities:
        node = s.get("required_capability") or s.node
        s.reader.error(node, s.path("required_capability"), "must be one of capabilities")
    if route.is_free and required is not None:
        node = s.get("required_capability") or s.node
        s.reader.error(node, s.path("required_capability"), "a free route issues no tokens")
    if route.upstream_ca_file is not None and route.upstream.startswith("http://"):
        node = s.get("upstream_ca_file") or s.node
        s.reader.error(node, s.path("upstream_ca_file"), "only for https upstreams")
    names = {k.lower() for k, _ in route.upstream_headers}
    if route.forward_authorization and "authorization" in names:
        node = s.get("upstream_headers") or s.node
        s.reader.error(
            node, s.path("upstream_headers"), "Authorization conflicts with forward_authorization"
        )


def _covers(earlier: Route, later: Route) -> bool:
    """True when every request `later` could match is taken by `earlier` first."""
    earlier_methods, later_methods = earlier.effective_methods, later.effective_methods
    if earlier_methods is not None and (
        later_methods is None or not later_methods <= earlier_methods
    ):
        return False
    if later.case_insensitive and not earlier.case_insensitive:
        return False
    if earlier.host is not None and (
        later.host is None or later.host.pattern != earlier.host.pattern
    ):
        return False
    return earlier.path.pattern in CATCH_ALL or earlier.path.pattern == later.path.pattern


def _check_table(reader: Reader, routes: list[Route], s: Section) -> None:
    """Name uniqueness and shadowing of the route just appended."""
    route = routes[-1]
    for other in routes[:-1]:
        if other.name == route.name:
            reader.error(
                s.get("name") or s.node,
                s.path("name"),
                f"duplicate name (also on line {other.line})",
            )
        elif _covers(other, route):
            reader.error(
                s.get("path") or s.node,
                s.path("path"),
                f"never matches: route {other.name!r} (line {other.line}) takes all its requests",
            )
            return
