"""Where and how one route is proxied, built once per route from its validated config.

The config loader has already validated every value (gateway.config), so
nothing is checked again here; the one thing that can still fail is loading
an `upstream_ca_file`, which raises ValueError for the caller to locate.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import yarl

from gateway.config.model import PathRewrite, Route


def tls_context(verify: bool, ca_file: str | None, *, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The one rule for an upstream's TLS: the system trust store, or `ca_file` (a private
    CA), or no verification at all (`verify` false: a self-signed upstream in
    development). Raises ValueError when the CA file cannot be loaded."""
    if ca_file is not None and not verify:
        raise ValueError("ca_file given but TLS verification is disabled")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot load CA file {ca_file}: {exc.strerror or exc}") from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def make_ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    """TLS settings for an HTTP/1.1 upstream, in the form aiohttp's `ssl=` accepts: `True`
    (the system trust store, aiohttp's shared default context), `False` (no verification),
    or a context pinning `ca_file`."""
    if ca_file is None:
        return verify
    return tls_context(verify, ca_file)


@dataclass(frozen=True)
class ProxyTarget:
    """Immutable so concurrent requests can share it."""

    upstream: yarl.URL
    timeout_seconds: float
    body_timeout_seconds: float
    max_body_bytes: int
    ssl: ssl.SSLContext | bool
    path_rewrite: PathRewrite | None = None
    extra_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def for_route(cls, route: Route) -> ProxyTarget:
        """Raises ValueError only when the route's CA file cannot be loaded."""
        ca_file = str(route.upstream_ca_file) if route.upstream_ca_file else None
        return cls(
            upstream=yarl.URL(route.upstream),
            timeout_seconds=route.upstream_timeout_seconds,
            body_timeout_seconds=route.request_body_timeout_seconds,
            max_body_bytes=route.max_body_bytes,
            ssl=make_ssl_context(route.upstream_tls_verify, ca_file),
            path_rewrite=route.path_rewrite,
            extra_headers=MappingProxyType(dict(route.upstream_headers)),
        )

    @property
    def host_header(self) -> str:
        return self.upstream.host_port_subcomponent or ""

    def url_for(self, path: str, query: str) -> yarl.URL:
        """Upstream URL: base path + (rewritten) normalised path + the raw query.

        `path` is the request's normal form (gateway.http.paths), still
        percent-encoded: the path that was priced is the path that is forwarded.
        """
        if self.path_rewrite is not None:
            path = self.path_rewrite.pattern.sub(self.path_rewrite.replacement, path, count=1)
        if not path.startswith("/"):
            path = "/" + path
        base = self.upstream.raw_path.rstrip("/")
        url = str(self.upstream.with_path(base + path, encoded=True))
        return yarl.URL(f"{url}?{query}" if query else url, encoded=True)
