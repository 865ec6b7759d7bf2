"""One Aperture service (`services[i]` of aperture.yaml) -> our routes.

A service becomes one priced route, preceded by one free route per
`authwhitelistpaths` entry (Aperture matches the service first, then lets
whitelisted paths through without a token, so the free route must match the
service's host and path *and* the whitelisted path). Prices are Aperture's
effective prices: 0 or no price means 1 sat there, so it stays 1 sat here
(0 would make our route free). Everything without an equivalent is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from gateway.aperture.notes import Notes
from gateway.aperture.payment import service_schemes
from gateway.aperture.source import BadValue, Block
from gateway.config.model import TokenMode
from gateway.http.headerpolicy import extra_header_problem

# Our route names and capability names (docs/configuration.md).
ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
CAPABILITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Path patterns our loader treats as "every path" (gateway.config.routes.CATCH_ALL).
CATCH_ALL = frozenset({"", "^", "/", "^/", ".*", "^.*", "^.*$", "^/.*", "^/.*$", ".*$", ".+"})
APERTURE_DEFAULT_PRICE_SATS = 1  # proxy/service.go: price 0 or unset
APERTURE_MAX_PRICE_SATS = 100_000 * 100_000_000  # proxy/service.go: maxServicePrice
LND_DEFAULT_INVOICE_EXPIRY = 86_400  # Aperture sets no expiry, so LND's default applies
# A path regex that names a gRPC method: /package.Service/Method.
_GRPC_PATH = re.compile(r"\^?/[A-Za-z_]\w*(?:\\?\.[A-Za-z_]\w*)+(?:/|\\?\.\*|\$|$)")
_HOST_PORT = re.compile(r":(?:\d+|\\d[+*]|\[0-9\][+*])(\$?)$")

SERVICE_KEYS = frozenset(
    {
        "name", "tlscertpath", "address", "protocol", "auth", "authscheme", "hostregexp",
        "pathregexp", "headers", "timeout", "capabilities", "constraints", "price",
        "dynamicprice", "authwhitelistpaths", "authskipinvoicecreationpaths", "ratelimits",
        "rewrite",
    }
)  # fmt: skip


@dataclass
class RouteOut:
    """One route of the output, in key order, with comment lines written above it."""

    fields: dict[str, object]
    comments: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def name(self) -> str:
        return str(self.fields["name"])


@dataclass(frozen=True)
class Plan:
    """What the top level decided for this service before converting it."""

    route_name: str
    free_names: tuple[str, ...]  # one per authwhitelistpaths entry
    auth_disabled: bool  # authenticator.disable: Aperture sold nothing
    mpp: bool = False  # authenticator.enablempp: `authscheme` decides the schemes


def is_grpc_path(pattern: str) -> bool:
    return _GRPC_PATH.match(pattern) is not None


def convert_service(block: Block, plan: Plan, notes: Notes) -> list[RouteOut]:
    """The routes for one service; raises BadValue when Aperture would refuse it too."""
    w = block.path
    block.report_unknown(SERVICE_KEYS, notes, {})
    upstream = _upstream(block, notes)
    host = _host(block, notes)
    path = block.text("pathregexp")
    _check_regex(w("pathregexp"), path)
    price = _price(block, plan, notes)
    common: dict[str, object] = {}
    if host is not None:
        common["host"] = host
    common["path"] = path
    common["upstream"] = upstream
    headers, forward_authorization = _headers(block, notes)
    ca_file = block.text("tlscertpath")
    if upstream.startswith("https://"):
        if ca_file:
            common["upstream_ca_file"] = ca_file
        notes.note(
            w("protocol"),
            "Aperture never verified the upstream's certificate; this gateway does "
            + ("against tlscertpath (upstream_ca_file)" if ca_file else "against the system CAs")
            + " (upstream_tls_verify: false would match Aperture)",
        )
    elif ca_file:
        notes.note(w("tlscertpath"), "ignored: the upstream is plain http (as in Aperture)")
    if headers:
        common["upstream_headers"] = headers
    if not forward_authorization:
        common["forward_authorization"] = False
    comments: list[str] = []
    grpc = is_grpc_path(path) or any(is_grpc_path(p) for p in block.strings("authwhitelistpaths"))
    if grpc:
        _grpc_note(block, upstream, notes)

    routes: list[RouteOut] = []
    service_free = price == 0
    for index, (allowed, free_name) in enumerate(
        zip(block.strings("authwhitelistpaths"), plan.free_names, strict=True)
    ):
        where = f"{w('authwhitelistpaths')}[{index}]"
        _check_regex(where, allowed)
        if service_free:
            notes.note(where, "the whole service is free already; entry not needed")
            continue
        combined = _both(path, allowed)
        if combined is None:
            notes.dropped(where, "cannot be combined with pathregexp into one Python regex")
            continue
        if combined == path:  # every path of the service is whitelisted: it is free
            service_free = True
            notes.note(where, "matches every path of the service: converted to a free route")
            continue
        free = {"name": free_name, **common, "path": combined, "price_sats": 0}
        src = f"{block.where} {plan.route_name!r}, free path {allowed!r}"
        routes.append(RouteOut(free, comments, src))

    fields: dict[str, object] = {"name": plan.route_name, **common}
    fields["price_sats"] = 0 if service_free else price
    if not service_free:
        validity, capabilities = _caveats(block, notes)
        fields["token_validity_seconds"] = validity
        fields["token_mode"] = TokenMode.REUSABLE.value
        if capabilities:
            fields["capabilities"] = capabilities
        fields["invoice_expiry_seconds"] = LND_DEFAULT_INVOICE_EXPIRY
        fields["private_invoices"] = False
        schemes = service_schemes(block, plan.mpp, notes)
        if schemes is not None:
            fields["schemes"] = list(schemes)
    _unsupported(block, notes)
    routes.append(RouteOut(fields, comments, f"{block.where} {plan.route_name!r}"))
    return routes


def _grpc_note(block: Block, upstream: str, notes: Notes) -> None:
    """gRPC needs nothing more than a route here: calls arriving over HTTP/2 (h2c) on the
    public port are proxied over HTTP/2 to the same upstream (docs/grpc.md)."""
    if upstream.startswith("https://"):
        hop = "over TLS with ALPN h2, as Aperture did"
    else:
        hop = (
            "over h2c (Aperture spoke HTTP/1.1 to a plain-http upstream, which a gRPC "
            "server refuses)"
        )
    notes.note(
        block.path("pathregexp"),
        f"a gRPC service (/package.Service/Method): paid calls are proxied over HTTP/2 to the "
        f"upstream {hop}; clients reach this gateway over h2c (behind a TLS front, forward "
        "gRPC as h2c: docs/grpc.md)",
    )


def _caveats(block: Block, notes: Notes) -> tuple[int | None, list[str]]:
    """token_validity_seconds and capabilities, as Aperture v0.5.0 really mints them.

    Its service limiter looks a service up by (name, tier, price) with the price
    as configured, but mints with the effective price, which is 1 when the
    configured one is 0: such services get neither a capabilities nor a
    `_valid_until` caveat (seen on the wire: only `services=<name>:0`).
    """
    validity = block.integer("timeout")
    capabilities = _capabilities(block, notes)
    if block.integer("price") == 0 and (validity > 0 or capabilities):
        notes.note(
            block.path("timeout" if validity > 0 else "capabilities"),
            "Aperture v0.5.0 ignores timeout and capabilities of a service whose price is 0 "
            "(it mints only services=<name>:0); converted the same way: add "
            "token_validity_seconds/capabilities by hand to apply them",
        )
        return None, []
    return (validity if validity > 0 else None), capabilities


def _upstream(block: Block, notes: Notes) -> str:
    w = block.path
    address = block.text("address")
    if not address:
        raise BadValue(w("address"), "missing: Aperture needs the upstream host:port")
    protocol = block.text("protocol").lower()
    if not protocol:
        notes.note(w("protocol"), "not set; using http")
        protocol = "http"
    if protocol not in ("http", "https"):
        raise BadValue(w("protocol"), f"{protocol!r}: Aperture supports http and https")
    base = f"{protocol}://{address}"
    try:
        parts = urlsplit(base)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise BadValue(w("address"), f"not host:port ({exc})") from None
    if not parts.hostname or not port_ok or parts.path or parts.query or "@" in address:
        raise BadValue(w("address"), "not host:port")
    rewrite = block.child("rewrite")
    if rewrite is not None:
        rewrite.report_unknown(frozenset({"prefix"}), notes, {})
        prefix = rewrite.text("prefix")
        if prefix:
            if not prefix.startswith("/") or "?" in prefix or "#" in prefix:
                raise BadValue(rewrite.path("prefix"), "must be an absolute path")
            # Aperture joins prefix + request path; our upstream path is prepended the same way.
            base += quote(prefix.rstrip("/"), safe="/-._~!$&'()*+,;=:@%")
    return base


def _host(block: Block, notes: Notes) -> str | None:
    """hostregexp, adapted: Aperture matches the Host header *with* its port, we without."""
    pattern = block.text("hostregexp")
    where = block.path("hostregexp")
    _check_regex(where, pattern)
    if pattern in ("", ".*", "^.*$", "^.*", ".*$"):
        return None
    stripped = _HOST_PORT.sub(r"\1", pattern)
    if stripped != pattern:
        notes.dropped(
            where,
            f"{pattern!r} names a port; this gateway matches the host name without its port, "
            f"so it became {stripped!r} (it now also matches requests for other ports)",
        )
        pattern = stripped
    elif ":" in pattern.replace("(?:", "").replace("(?i:", ""):
        notes.dropped(
            where,
            f"{pattern!r} seems to match a port; this gateway matches the host name without "
            "its port, so this pattern may never match: check it",
        )
    if any(c.isupper() for c in re.sub(r"\\.", "", pattern)):
        notes.note(where, "this gateway lower-cases the host before matching")
    return pattern


def _check_regex(where: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BadValue(where, f"regex {pattern!r} is not valid in Python: {exc}") from None


def _both(path: str, allowed: str) -> str | None:
    """A pattern that `re.search`-matches exactly when both patterns do."""
    if path in CATCH_ALL:
        return path if allowed in CATCH_ALL else allowed
    if allowed in CATCH_ALL or allowed == path:
        return path
    combined = f"^(?=.*?(?:{path}))(?=.*?(?:{allowed}))"
    try:
        re.compile(combined)
    except re.error:
        return None
    return combined


def _price(block: Block, plan: Plan, notes: Notes) -> int:
    w = block.path
    price = block.integer("price")
    if price < 0:
        raise BadValue(w("price"), "negative (Aperture refuses to start)")
    if price > APERTURE_MAX_PRICE_SATS:
        raise BadValue(w("price"), "above Aperture's maximum (refuses to start)")
    if plan.auth_disabled:
        return 0
    dynamic = block.child("dynamicprice")
    if dynamic is not None:
        dynamic.report_unknown(
            frozenset({"enabled", "grpcaddress", "insecure", "tlscertpath"}), notes, {}
        )
        if dynamic.boolean("enabled"):
            notes.dropped(
                dynamic.path("enabled"),
                "prices from a gRPC pricer are not supported; converted with the static price. "
                "Tokens Aperture sold for this service name the resource path in their services "
                "caveat and will not verify here",
            )
    auth = _auth_level(block)
    if auth == "off":
        return 0
    if auth.startswith("freebie"):
        notes.dropped(
            w("auth"), f"{auth!r}: free requests per client IP are not supported; all are priced"
        )
    if price == 0:
        notes.note(w("price"), "0 or unset: Aperture charges 1 sat, kept as price_sats: 1")
        return APERTURE_DEFAULT_PRICE_SATS
    return price


def _auth_level(block: Block) -> str:
    raw = block.raw("auth")
    if isinstance(raw, bool):  # PyYAML reads `auth: off` as false
        return "on" if raw else "off"
    level = block.text("auth").strip().lower()
    if level in ("", "on", "true"):
        return "on"
    if level in ("off", "false"):
        return "off"
    parts = level.split(" ")
    if len(parts) == 2 and parts[0] == "freebie" and parts[1].isdigit():
        return level
    raise BadValue(block.path("auth"), f"{level!r}: expected on, off or 'freebie N'")


def _capabilities(block: Block, notes: Notes) -> list[str]:
    where = block.path("capabilities")
    out: list[str] = []
    for item in block.text("capabilities").split(","):
        item = item.strip()
        if not item or item in out:
            continue
        if CAPABILITY.fullmatch(item) is None:
            notes.dropped(where, f"{item!r} is not a valid capability name here")
            continue
        out.append(item)
    return out


def _headers(block: Block, notes: Notes) -> tuple[dict[str, str], bool]:
    """upstream_headers, and whether the buyer's Authorization is still forwarded."""
    where = block.path("headers")
    out: dict[str, str] = {}
    forward_authorization = True
    for name, value in block.string_map("headers").items():
        if value.startswith("!file"):
            notes.dropped(
                f"{where}.{name}",
                "value read from a file by Aperture: set it here by hand (upstream_headers "
                "values may use ${ENV_VAR})",
            )
            continue
        if any(c in value for c in "\r\n\0"):
            notes.dropped(f"{where}.{name}", "value contains a control character")
            continue
        problem = extra_header_problem(name, forwards_authorization=False)
        if problem is not None:
            notes.dropped(f"{where}.{name}", f"cannot be set here: {problem}")
            continue
        if name.lower() == "authorization":
            forward_authorization = False
            notes.dropped(
                f"{where}.{name}",
                "kept, so the upstream no longer receives the buyer's L402 Authorization "
                "(Aperture sent both; forward_authorization: false)",
            )
        out[name] = value.replace("$", "$$")  # our loader expands ${VAR}
    return out, forward_authorization


def _unsupported(block: Block, notes: Notes) -> None:
    w = block.path
    constraints = block.string_map("constraints")
    if constraints:
        keys = ", ".join(sorted(constraints))
        notes.dropped(
            w("constraints"),
            f"no equivalent ({keys}); tokens Aperture sold for this service carry these caveats, "
            "which this gateway refuses as unknown: they will not verify here",
        )
    if block.strings("authskipinvoicecreationpaths"):
        notes.dropped(
            w("authskipinvoicecreationpaths"),
            "not supported: those paths get a challenge with an invoice here",
        )
    if block.raw("ratelimits"):
        notes.dropped(
            w("ratelimits"), "per-token request rate limits are not supported (none applied)"
        )
