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
    public: Listener
    admin: Listener


@dataclass(frozen=True)
class LndConfig:
    host: str
    tls_cert: Path
    macaroon: Path
    timeout_seconds: float


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
    ipv6_prefix: int = 64

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0


@dataclass(frozen=True)
class PathRewrite:
    """A regex substitution applied to the request path before joining the upstream."""

    pattern: re.Pattern[str]
    replacement: str


@dataclass(frozen=True)
class Route:
    """One priced (or free) upstream; `name` doubles as macaroon service and metric label."""

    name: str
    path: re.Pattern[str]
    upstream: str
    price_msat: int
    host: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    upstream_tls_verify: bool = True
    upstream_ca_file: Path | None = None
    upstream_timeout_seconds: float = 30.0
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
    line: int = field(default=0, compare=False)

    @property
    def is_free(self) -> bool:
        return self.price_msat == 0

    @property
    def single_use(self) -> bool:
        return self.token_mode is TokenMode.PER_REQUEST

    @property
    def memo(self) -> str:
        return self.invoice_memo or f"L402 {self.name}"

    def matches(self, host: str, path: str, method: str) -> bool:
        """Aperture semantics: `re.search`, so patterns anchor only where they say so."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        if self.host is not None and self.host.search(_hostname(host)) is None:
            return False
        return self.path.search(path) is not None


def _hostname(host: str) -> str:
    """Strip the port (and IPv6 brackets) from a Host header and lower-case it."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end != -1 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


@dataclass(frozen=True)
class RouteTable:
    """Ordered routes; the first route that matches a request wins."""

    routes: tuple[Route, ...]

    def match(self, host: str, path: str, method: str) -> Route | None:
        for route in self.routes:
            if route.matches(host, path, method):
                return route
        return None

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


@dataclass(frozen=True)
class GatewayConfig:
    source: Path
    listen: ListenConfig
    trusted_proxies: tuple[IPNetwork, ...]
    lnd: LndConfig
    store: StoreConfig
    verified_cache_size: int
    routes: RouteTable
    challenge_rate_limit: ChallengeRateLimit = ChallengeRateLimit()

    @property
    def base_dir(self) -> Path:
        return self.source.parent
