"""Discovery documents for agent buyers: the L402 manifest and the priced OpenAPI document.

The format follows the L402 discovery draft (lightninglabs/L402 pull request
27, `discovery-spec.md`, served by Aperture's pull request 241 and read by
lnget's pull request 25): a manifest at `/.well-known/l402.json` with
`version`, `provider`, `currencies`, `services[].resources[]` each carrying a
`pricing` object (`model` `fixed` + `price_msat`, or `dynamic`), and a
`caveats` vocabulary; and an OpenAPI 3 document whose operations carry the
same pricing in `x-l402-*` extensions. Clients must ignore members they do
not know, so the gateway adds its own (`route`, `path_regex`, `token_mode`,
...) beside the draft's. Where the gateway differs from the draft, it says so
in README "Discovery".

Both documents are built from the route table in force, for one request
host (routes with a `host` pattern appear only for hosts they match), with
the gateway's own matching: a resource's `path` is given only when the
route's regex is a literal path that the table really routes to that route,
and an OpenAPI operation is priced by the route the table picks for its
path (parameters filled with examples) and method. Free routes are omitted:
they need no L402 and may be internal. Pure functions: no I/O here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.config.model import (
    DISCOVERY_OPENAPI_PATH,
    DiscoveryConfig,
    PaymentConfig,
    Route,
    RouteTable,
)
from gateway.config.openapi import OPERATIONS
from gateway.discovery.payment_offers import payment_info, payment_offers
from gateway.l402.caveats import CAPABILITIES_SUFFIX, PREIMAGE, SERVICES, VALID_UNTIL_SUFFIX

MANIFEST_VERSION = "1.0"
SECURITY_SCHEME = "L402"
ANY_METHOD_PROBE = "GET"  # how a route without `methods` is checked and described
_META = set(".^$*+?{}[]|()\\")
_TEMPLATE = re.compile(r"\{([^{}/]+)\}")


def visible_routes(table: RouteTable, host: str) -> tuple[Route, ...]:
    """The priced routes a request to `host` could reach, in table order."""
    return tuple(route for route in table.routes if not route.is_free and route.matches_host(host))


def literal_path(route: Route) -> str | None:
    """The one path an anchored literal pattern (`^/a/b\\.json$`) matches, else None."""
    pattern = route.path.pattern
    if pattern.startswith("\\A"):
        pattern = "^" + pattern[2:]
    if pattern.endswith("\\Z"):
        pattern = pattern[:-2] + "$"
    if not (pattern.startswith("^/") and pattern.endswith("$")) or pattern.endswith("\\$"):
        return None
    out: list[str] = []
    body = pattern[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            if index + 1 >= len(body) or body[index + 1].isalnum():
                return None  # \d, \w, \b...: a class, not a literal
            out.append(body[index + 1])
            index += 2
            continue
        if char in _META and char != ".":  # an unescaped dot is taken as itself
            return None
        out.append(char)
        index += 1
    return "".join(out)


def pricing_of(route: Route) -> dict[str, Any]:
    """The draft's pricing object; a hooked route is `dynamic` with its fallback and bound."""
    if route.pricing is None:
        return {"model": "fixed", "price_msat": route.price_msat}
    return {
        "model": "dynamic",
        "fallback_price_msat": route.pricing.fallback_msat,
        "max_price_msat": route.pricing.max_msat,
    }


def _resource(route: Route, method: str | None, path: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {}
    if path is not None:
        resource["path"] = path
    if method is not None:
        resource["method"] = method
    if route.required_capability is not None:
        resource["capability"] = route.required_capability
    resource["pricing"] = pricing_of(route)
    resource.update(
        route=route.name,
        path_regex=route.path.pattern,
        methods=sorted(route.methods) if route.methods is not None else None,
        token_mode=route.token_mode.value,
        token_validity_seconds=route.token_validity_seconds,
    )
    if route.capabilities:
        resource["token_capabilities"] = list(route.capabilities)
    return resource


def resources(route: Route, table: RouteTable, host: str) -> list[dict[str, Any]]:
    """One resource per method the route takes (one without `method` for any method).

    `path` is set only where the table really sends that literal path and
    method to this route (an earlier route may take it first).
    """
    literal = literal_path(route)
    methods: Iterable[str | None] = sorted(route.methods) if route.methods else [None]
    found = []
    for method in methods:
        path = literal
        if path is not None and table.match(host, path, method or ANY_METHOD_PROBE) is not route:
            path = None
        found.append(_resource(route, method, path))
    return found


def caveat_vocabulary(routes: Sequence[Route]) -> dict[str, Any]:
    """The caveat conditions the gateway enforces for these routes (draft section 5.5)."""
    vocabulary: dict[str, Any] = {
        SERVICES: {"type": "service_list", "attenuation": "subset"},
        PREIMAGE: {
            "type": "string",
            "description": "hex preimage appended by gRPC clients (Grpc-Metadata-Macaroon)",
        },
    }
    for route in routes:
        if route.capabilities:
            vocabulary[route.service + CAPABILITIES_SUFFIX] = {
                "type": "string",
                "attenuation": "subset",
            }
        if route.token_validity_seconds is not None:
            vocabulary[route.service + VALID_UNTIL_SUFFIX] = {
                "type": "timestamp",
                "attenuation": "earlier",
            }
    return vocabulary


def provider(discovery: DiscoveryConfig) -> dict[str, Any]:
    found: dict[str, Any] = {"name": discovery.provider_name}
    if discovery.provider_uri is not None:
        found["uri"] = discovery.provider_uri
    if discovery.node_pubkey is not None:
        found["node_pubkey"] = discovery.node_pubkey
    return found


def manifest(
    discovery: DiscoveryConfig,
    table: RouteTable,
    host: str,
    payment: PaymentConfig | None = None,
) -> dict[str, Any]:
    """`/.well-known/l402.json` for a request to `host`: the routes L402 can buy (a route
    selling only the Payment scheme is in the OpenAPI document's `x-payment-info` alone)."""
    routes = tuple(route for route in visible_routes(table, host) if route.sells_l402)
    grouped: dict[str, list[Route]] = {}
    for route in routes:
        grouped.setdefault(route.service, []).append(route)
    services = []
    for name, members in grouped.items():
        service: dict[str, Any] = {"name": name}
        capabilities: list[str] = []
        for route in members:
            capabilities.extend(c for c in route.capabilities if c not in capabilities)
        if capabilities:
            service["capabilities"] = capabilities
        service["resources"] = [
            _with_payment(found, r, payment) for r in members for found in resources(r, table, host)
        ]
        services.append(service)
    document: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "provider": provider(discovery),
        "currencies": ["msat"],
        "macaroon_versions": [0],
        "payment_methods": ["bolt11"],
    }
    if discovery.openapi is not None:
        document["openapi"] = DISCOVERY_OPENAPI_PATH
    document["services"] = services
    document["caveats"] = caveat_vocabulary(routes)
    return document


def _with_payment(
    resource: dict[str, Any], route: Route, payment: PaymentConfig | None
) -> dict[str, Any]:
    """A resource of a route that also sells the Payment scheme names its schemes and offers
    (members of our own, beside the draft's: clients ignore what they do not know)."""
    offers = payment_offers(route, payment or PaymentConfig())
    if offers:
        resource["schemes"] = list(route.schemes)
        resource["payment_offers"] = offers
    return resource


def example_path(template: str, parameters: Sequence[Any]) -> str:
    """A concrete path for an OpenAPI path template: each `{name}` becomes the parameter's
    `example` (or its schema's `example`, `default`, first `enum` value), else `1` for
    numbers and `x` for anything else."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for parameter in parameters:
        if isinstance(parameter, Mapping) and parameter.get("in") == "path":
            by_name[str(parameter.get("name"))] = parameter

    def fill(match: re.Match[str]) -> str:
        parameter = by_name.get(match.group(1), {})
        schema = parameter.get("schema")
        schema = schema if isinstance(schema, Mapping) else {}
        enum = schema.get("enum")
        candidates = (
            parameter.get("example"),
            schema.get("example"),
            schema.get("default"),
            enum[0] if isinstance(enum, list) and enum else None,
        )
        for candidate in candidates:
            if isinstance(candidate, str | int | float) and not isinstance(candidate, bool):
                return str(candidate)
        return "1" if schema.get("type") in ("integer", "number") else "x"

    return _TEMPLATE.sub(fill, template)


def _parameters(item: Mapping[str, Any], operation: Mapping[str, Any]) -> list[Any]:
    found: list[Any] = []
    for where in (item, operation):
        listed = where.get("parameters")
        if isinstance(listed, list):
            found.extend(listed)
    return found


def _challenge_response(route: Route) -> dict[str, Any]:
    offered: list[str] = []
    if route.sells_l402:
        offered.append(
            "an L402 challenge (pay the invoice, then retry with Authorization: L402 "
            "<macaroon>:<preimage>)"
        )
    if route.sells_payment:
        offered.append(
            "Payment challenges (x-payment-info; pay, then retry with Authorization: Payment "
            "<credential>)"
        )
    headers: list[str] = []
    if route.sells_l402:
        headers.append(
            'L402 macaroon="<base64>", invoice="<bolt11>", amount_msats="<msat>" (also sent '
            "once with the LSAT scheme)"
        )
    if route.sells_payment:
        headers.append('Payment id="...", method="lightning", intent="charge" or "session", ...')
    return {
        "description": "Payment Required: " + "; or ".join(offered),
        "headers": {
            "WWW-Authenticate": {
                "description": "; ".join(headers),
                "schema": {"type": "string"},
            }
        },
    }


def _require_l402(operation: dict[str, Any], root_security: Any) -> None:
    """AND the L402 scheme into every security alternative the operation already has."""
    security = operation.get("security", root_security)
    alternatives = [dict(a) for a in security if isinstance(a, dict)] if security else []
    if not alternatives:
        alternatives = [{}]
    for alternative in alternatives:
        alternative[SECURITY_SCHEME] = []
    operation["security"] = alternatives


def _annotate(
    operation: dict[str, Any], route: Route, root_security: Any, payment: PaymentConfig
) -> None:
    info = payment_info(route, payment)
    if info is not None:
        operation["x-payment-info"] = info
    if route.sells_l402:
        _annotate_l402(operation, route, root_security)
    responses = operation.get("responses")
    if not isinstance(responses, dict):
        responses = operation["responses"] = {}
    responses.setdefault("402", _challenge_response(route))


def _annotate_l402(operation: dict[str, Any], route: Route, root_security: Any) -> None:
    operation["x-l402-service"] = route.service
    if route.required_capability is not None:
        operation["x-l402-capability"] = route.required_capability
    operation["x-l402-pricing"] = pricing_of(route)
    operation["x-l402-route"] = route.name
    operation["x-l402-token-mode"] = route.token_mode.value
    operation["x-l402-token-validity-seconds"] = route.token_validity_seconds
    _require_l402(operation, root_security)


def priced_openapi(
    discovery: DiscoveryConfig,
    table: RouteTable,
    host: str,
    payment: PaymentConfig | None = None,
) -> dict[str, Any]:
    """The operator's OpenAPI document with every operation a priced route serves annotated:
    `x-l402-*` for L402, `x-payment-info` for the Payment scheme (each as the route sells)."""
    assert discovery.openapi is not None
    document = copy.deepcopy(discovery.openapi)
    root_security = document.get("security")
    paths = document.get("paths")
    routes: list[Route] = []
    for template, item in (paths or {}).items():
        for method in OPERATIONS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            path = example_path(template, _parameters(item, operation))
            route = table.match(host, path, method.upper())
            if route is None or route.is_free:
                continue
            _annotate(operation, route, root_security, payment or PaymentConfig())
            if route.sells_l402 and route not in routes:
                routes.append(route)
    info = document.get("info")
    if not isinstance(info, dict):
        info = document["info"] = {"title": discovery.provider_name, "version": "1"}
    info["x-l402-version"] = MANIFEST_VERSION
    info["x-l402-provider"] = provider(discovery)
    document["x-l402-caveats"] = caveat_vocabulary(routes)
    components = document.get("components")
    if not isinstance(components, dict):
        components = document["components"] = {}
    schemes = components.get("securitySchemes")
    if not isinstance(schemes, dict):
        schemes = components["securitySchemes"] = {}
    schemes[SECURITY_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "x-l402-scheme": "L402",
        "description": "L402 <base64 macaroon>:<hex preimage>, obtained by paying the 402 "
        "challenge; never a static key",
    }
    return document
