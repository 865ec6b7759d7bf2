"""The validated, immutable configuration the rest of the gateway reads.

Everything here has already been checked by the loader, so consumers never
re-validate: regexes are compiled, prices are in millisatoshis, paths are
absolute and `${VAR}` references are resolved.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from gateway.config.errors import ConfigError
from gateway.l402.grammar import CREDENTIAL_HEADERS

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenMode(StrEnum):
    """Whether one payment buys unlimited requests or exactly one."""

    REUSABLE = "reusable"
    PER_REQUEST = "per-request"


@dataclass(frozen=True)
class Listener:
    """A "host:port" socket address; IPv6 hosts are kept without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class ListenConfig:
    """Both listeners, and the bounds every public connection lives within.

    `max_connections` None = derived at start-up from the process's descriptor
    limit (see gateway.server.edge); `header_timeout_seconds` bounds the wait
    for a request's head (slowloris) and an idle keep-alive connection alike.
    """

    public: Listener
    admin: Listener
    max_connections: int | None = None
    header_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: float = 15.0


@dataclass(frozen=True)
class AdminConfig:
    """The admin API's bearer secret file; None = the API is off (probes and /metrics stay)."""

    token_file: Path | None = None


@dataclass(frozen=True)
class LndConfig:
    """`lightning: {backend: lnd, ...}` (or the older `lnd:` section): one LND node over gRPC.

    `macaroon` mints and looks up invoices (LND's invoice.macaroon is enough);
    `refund_macaroon`, when given, is the only credential allowed to pay
    (session refunds): never the invoice macaroon, never admin.
    """

    host: str
    tls_cert: Path
    macaroon: Path
    timeout_seconds: float
    refund_macaroon: Path | None = None
    section: str = field(default="lightning", compare=False)  # as written: lightning or lnd

    backend: ClassVar[str] = "lnd"


# The configured Lightning backend; a new backend adds its config class to this union.
LightningConfig = LndConfig


@dataclass(frozen=True)
class StoreConfig:
    """`url` is `sqlite:///absolute/path` or a `postgresql://` URL.

    `prune_after_days`: age after which unpaid, canceled tokens are pruned; 0 = never.
    `timeout_seconds`: every store call fails (503 + Retry-After) after this long.
    """

    url: str = field(repr=False)  # a PostgreSQL URL may carry a password
    prune_after_days: int = 7
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class ChallengeRateLimit:
    """Challenges one client (IP address) may obtain: `per_minute` refill, `burst` at once.

    `per_minute == 0` turns the limit off. IPv6 clients are keyed by their
    `ipv6_prefix`-bit network (one subscriber usually holds a whole /64).
    """

    per_minute: int = 60
    burst: int = 20
    ipv6_prefix: int = 64  # IPv6 clients are keyed by this prefix (one /64 = one client)

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0


@dataclass(frozen=True)
class PathRewrite:
    """A regex substitution applied to the request path before joining the upstream."""

    pattern: re.Pattern[str]
    replacement: str


LEASE_MARGIN_SECONDS = 30

# `Route.upstream` of a route loaded for the embedded middleware (gateway.embed), where
# the app's own handler answers: nothing is ever forwarded. A `.invalid` name never
# resolves (RFC 6761), so even a bug that tried to forward could reach no host.
EMBEDDED_UPSTREAM = "http://embedded.invalid"

ANY_ORIGIN = "*"
# A browser may send every header that carries a credential (gateway.l402.grammar).
DEFAULT_CORS_ALLOW_HEADERS = tuple(sorted({*CREDENTIAL_HEADERS, "content-type", "x-request-id"}))
DEFAULT_CORS_EXPOSE_HEADERS = ("www-authenticate", "x-request-id", "retry-after")


@dataclass(frozen=True)
class CorsPolicy:
    """Cross-origin access for browser buyers (Fetch spec CORS).

    `allow_origins` is `("*",)` for any origin, or exact origins
    (`https://app.example`). With `allow_credentials` the origin list must be
    explicit (the loader refuses `*`), and the request's origin is echoed.
    """

    allow_origins: tuple[str, ...]
    allow_credentials: bool = False
    allow_headers: tuple[str, ...] = DEFAULT_CORS_ALLOW_HEADERS
    expose_headers: tuple[str, ...] = DEFAULT_CORS_EXPOSE_HEADERS
    max_age_seconds: int = 600

    @property
    def any_origin(self) -> bool:
        return ANY_ORIGIN in self.allow_origins

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.allow_origins


@dataclass(frozen=True)
class PricingHook:
    """A route's dynamic price: the operator's own service is asked at each challenge.

    `headers` are lower-cased request header names sent to the hook (a bounded
    set, never credentials). Any failure (timeout, error, invalid answer) uses
    `fallback_msat`; an answer must lie in 1..`max_msat` (gateway.pricer.hook).
    """

    url: str
    fallback_msat: int
    max_msat: int
    timeout_seconds: float = 1.0
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """One priced (or free) upstream; `name` is the metric label and, unless `service`
    says otherwise, the macaroon's service name.

    Every default of a route is written here, once: the loader reads them as
    class attributes (`Route.max_body_bytes`), and nothing downstream re-validates.
    """

    name: str
    path: re.Pattern[str]
    upstream: str
    price_msat: int
    host: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    upstream_tls_verify: bool = True
    upstream_ca_file: Path | None = None
    upstream_timeout_seconds: float = 30.0
    request_body_timeout_seconds: float = 30.0
    upstream_headers: tuple[tuple[str, str], ...] = ()
    path_rewrite: PathRewrite | None = None
    token_validity_seconds: int | None = None
    token_mode: TokenMode = TokenMode.REUSABLE
    capabilities: tuple[str, ...] = ()
    required_capability: str | None = None
    forward_authorization: bool = True
    max_body_bytes: int = 1_048_576
    invoice_memo: str = ""
    invoice_expiry_seconds: int = 3600
    private_invoices: bool = True
    service_name: str | None = None  # macaroon service; None = the route name
    cors: CorsPolicy | None = None  # None = the top-level `cors`
    pricing: PricingHook | None = None  # None = the constant `price_msat`
    schemes: tuple[str, ...] = ("l402",)  # which authentication schemes sell it
    # Path spellings some upstreams read differently (gateway.http.pathrules): refused
    # (400) unless the route says its upstream treats them as plain characters.
    allow_path_parameters: bool = False  # `;` in the path (Tomcat/Spring strip `;...`)
    allow_encoded_percent: bool = False  # `%25` (an upstream that decodes twice)
    case_insensitive: bool = False  # `path` matched ignoring case (the loader compiles it so)
    line: int = field(default=0, compare=False)

    @property
    def is_free(self) -> bool:
        """A hooked route is never free: its `price_msat` is the hook's fallback (>= 1)."""
        return self.price_msat == 0 and self.pricing is None

    @property
    def sells_l402(self) -> bool:
        return "l402" in self.schemes

    @property
    def sells_payment(self) -> bool:
        return "payment" in self.schemes

    @property
    def single_use(self) -> bool:
        return self.token_mode is TokenMode.PER_REQUEST

    @property
    def memo(self) -> str:
        return self.invoice_memo or f"L402 {self.name}"

    @property
    def service(self) -> str:
        """The name in this route's `services=` caveat (Aperture's service name)."""
        return self.service_name or self.name

    @property
    def lease_seconds(self) -> int:
        """How long a single-use lease must last: the body upload, then the upstream's
        answer, each within its own deadline, plus a margin for the commit."""
        upload_then_answer = self.request_body_timeout_seconds + self.upstream_timeout_seconds
        return int(upload_then_answer) + LEASE_MARGIN_SECONDS

    def matches_host(self, host: str) -> bool:
        return self.host is None or self.host.search(_hostname(host)) is not None

    def matches_resource(self, host: str, path: str) -> bool:
        """Aperture semantics: `re.search`, so patterns anchor only where they say so."""
        if self.host is not None and self.host.search(_hostname(host)) is None:
            return False
        return self.path.search(path) is not None

    def allows_method(self, method: str) -> bool:
        """HEAD is GET without the body (RFC 9110 §9.3.2): servers and frameworks answer it
        from the GET handler, so a route that prices GET prices HEAD too."""
        if self.methods is None:
            return True
        upper = method.upper()
        return upper in self.methods or (upper == "HEAD" and "GET" in self.methods)

    @property
    def effective_methods(self) -> frozenset[str] | None:
        """`methods` with HEAD where GET is listed (None: every method)."""
        if self.methods is None or "GET" not in self.methods:
            return self.methods
        return self.methods | {"HEAD"}

    def matches(self, host: str, path: str, method: str) -> bool:
        return self.allows_method(method) and self.matches_resource(host, path)


def _hostname(host: str) -> str:
    """The name routes match: the Host header (or `:authority`) without its port, IPv6
    brackets and trailing dot, lower-cased. `internal.example.` is the same host as
    `internal.example` (an absolute DNS name), and servers answer both the same."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end != -1 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


@dataclass(frozen=True)
class RouteTable:
    """Ordered routes; the first route that matches a request wins."""

    routes: tuple[Route, ...]

    def match(self, host: str, path: str, method: str) -> Route | None:
        for route in self.routes:
            if route.matches(host, path, method):
                return route
        return None

    def allowed_methods(self, host: str, path: str) -> frozenset[str] | None:
        """Methods some route takes for this resource: None when no route has it at all.

        For a 405 with `Allow`: the request's resource exists, its method does not.
        """
        found: set[str] = set()
        for route in self.routes:
            if route.matches_resource(host, path):
                methods = route.effective_methods
                if methods is None:
                    return None  # a route takes every method: the caller's match succeeded
                found |= methods
        return frozenset(found) if found else None

    def by_name(self, name: str) -> Route | None:
        for route in self.routes:
            if route.name == name:
                return route
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)

    def __len__(self) -> int:
        return len(self.routes)


DISCOVERY_MANIFEST_PATH = "/.well-known/l402.json"
DISCOVERY_OPENAPI_PATH = "/.well-known/l402-openapi.json"


@dataclass(frozen=True)
class DiscoveryConfig:
    """The public discovery documents (gateway.server.discovery_endpoint).

    `openapi` is the operator's OpenAPI document, parsed and checked at load
    time (a JSON-compatible mapping), None when `openapi_file` is not set.
    """

    enabled: bool = True
    provider_name: str = "l402-gateway"
    provider_uri: str | None = None
    node_pubkey: str | None = None
    max_age_seconds: int = 300
    openapi_file: Path | None = None
    openapi: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def paths(self) -> frozenset[str]:
        """The request paths discovery answers (before any route), empty when disabled."""
        if not self.enabled:
            return frozenset()
        if self.openapi is None:
            return frozenset({DISCOVERY_MANIFEST_PATH})
        return frozenset({DISCOVERY_MANIFEST_PATH, DISCOVERY_OPENAPI_PATH})


@dataclass(frozen=True)
class SessionPolicy:
    """The Payment scheme's prepaid `session` intent (docs/payment-scheme.md)."""

    enabled: bool = False
    deposit_multiplier: int = 20  # deposit = route price x this
    idle_timeout_seconds: int = 300
    # A return invoice must stay payable this long after the open (and >= 2 x idle timeout).
    return_invoice_min_validity_seconds: int = 600
    refund_fee_limit_sats: int = 100
    refund_timeout_seconds: int = 30


@dataclass(frozen=True)
class PaymentConfig:
    """The Payment HTTP authentication scheme (MPP) beside L402."""

    realm: str = "l402-gateway"
    challenge_ttl_seconds: int = 900
    sessions: SessionPolicy = SessionPolicy()


@dataclass(frozen=True)
class GatewayConfig:
    source: Path
    listen: ListenConfig
    trusted_proxies: tuple[IPNetwork, ...]
    lightning: LightningConfig
    store: StoreConfig
    verified_cache_size: int
    routes: RouteTable
    challenge_rate_limit: ChallengeRateLimit = ChallengeRateLimit()
    # Status for malformed or forged credentials: 402 (Aperture's, the default: clients
    # that re-pay only on 402 recover) or 401 (the spec's). Both carry a fresh challenge.
    invalid_credential_status: int = 402
    cors: CorsPolicy | None = None
    discovery: DiscoveryConfig = DiscoveryConfig()
    admin: AdminConfig = AdminConfig()
    payment: PaymentConfig = PaymentConfig()
    # Loaded with defer_env: problems with values that use an unset ${VAR}, by field.
    deferred: tuple[ConfigError, ...] = field(default=(), compare=False)

    @property
    def base_dir(self) -> Path:
        return self.source.parent
