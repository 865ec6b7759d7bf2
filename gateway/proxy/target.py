"""Per-route upstream settings, validated once when the configuration loads."""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import yarl

from gateway.headerpolicy import extra_header_problem

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def make_ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    """TLS settings for an upstream, in the form aiohttp's `ssl=` accepts.

    `True` means the system trust store, `False` disables verification (for a
    self-signed upstream during development); `ca_file` pins a private CA.
    """
    if ca_file is not None:
        if not verify:
            raise ValueError("ca_file given but TLS verification is disabled")
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cannot load CA file {ca_file}: {exc.strerror or exc}") from exc
    return verify


@dataclass(frozen=True)
class ProxyTarget:
    """Where and how one route is proxied; immutable so requests can share it."""

    upstream: yarl.URL
    path_rewrite: tuple[re.Pattern[str], str] | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ssl: ssl.SSLContext | bool = True

    def __post_init__(self) -> None:
        url = self.upstream
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"upstream must be an absolute http(s) URL, got {url}")
        if url.query_string or url.fragment or url.user or url.password:
            raise ValueError("upstream URL must not carry a query, fragment or credentials")
        if not (math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0):
            raise ValueError("timeout_seconds must be a positive number")
        if self.max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        for name, value in self.extra_headers.items():
            problem = extra_header_problem(name, forwards_authorization=False)
            if problem is not None:
                raise ValueError(f"extra header {name!r}: {problem}")
            if "\r" in value or "\n" in value or "\0" in value:
                raise ValueError(f"extra header {name!r} contains a control character")
        # Freeze the mapping so a shared target cannot be mutated per request.
        object.__setattr__(self, "extra_headers", MappingProxyType(dict(self.extra_headers)))

    @classmethod
    def create(
        cls,
        upstream: str,
        *,
        path_rewrite: tuple[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        tls_verify: bool = True,
        ca_file: str | None = None,
    ) -> ProxyTarget:
        """Build from plain configuration values; raises ValueError on bad input."""
        rewrite = None
        if path_rewrite is not None:
            pattern, replacement = path_rewrite
            try:
                rewrite = (re.compile(pattern), replacement)
            except re.error as exc:
                raise ValueError(f"invalid path rewrite pattern {pattern!r}: {exc}") from exc
        return cls(
            upstream=yarl.URL(upstream),
            path_rewrite=rewrite,
            extra_headers=dict(extra_headers or {}),
            timeout_seconds=timeout_seconds,
            max_body_bytes=max_body_bytes,
            ssl=make_ssl_context(tls_verify, ca_file),
        )

    def url_for(self, rel_url: yarl.URL) -> yarl.URL:
        """Upstream URL for a request: base path + (rewritten) raw path + raw query."""
        path = rel_url.raw_path
        if self.path_rewrite is not None:
            pattern, replacement = self.path_rewrite
            path = pattern.sub(replacement, path, count=1)
        if not path.startswith("/"):
            path = "/" + path
        base = self.upstream.raw_path.rstrip("/")
        url = str(self.upstream.with_path(base + path, encoded=True))
        query = rel_url.raw_query_string
        return yarl.URL(f"{url}?{query}" if query else url, encoded=True)
