"""Routes and settings given in code, validated by the routes.yaml loader itself.

`PricedRoute` and `LndSettings` only carry values: `build_config` writes them
into a routes.yaml document and runs `gateway.config.loader.parse_config`
(embedded mode) on it, so a route from code obeys exactly the rules, defaults
and messages of a route from the file, and no rule is written twice. Errors
name the field as the file would (`routes[1].price_sats: must be >= 0`);
line numbers would point into the generated document, so they are 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.loader import parse_config
from gateway.config.model import GatewayConfig

SOURCE_NAME = "L402.from_routes"


def _plain(value: object) -> object:
    """A value as YAML's safe dumper writes it (enums as their text, sets as lists)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value


def _entries(item: object) -> dict[str, object]:
    """The routes.yaml keys of a dataclass: every field that was given (None = default)."""
    return {
        f.name: _plain(getattr(item, f.name))
        for f in fields(item)  # type: ignore[arg-type]
        if getattr(item, f.name) is not None
    }


@dataclass(frozen=True)
class PricedRoute:
    """One route of the embedded middleware, with routes.yaml's keys (docs/configuration.md).

    Price 0 makes a free route (a carve-out inside a priced prefix: first match
    wins). Give `price_sats` or `price_msats`, not both; None leaves a key out
    (its routes.yaml default applies). The proxy-only keys (upstream_*,
    path_rewrite, forward_authorization, max_body_bytes, cors) do not exist here.
    """

    name: str
    path: str  # a regex searched in the normalised request path, as in routes.yaml
    price_sats: int | None = None
    price_msats: int | None = None
    methods: Sequence[str] | None = None
    host: str | None = None
    token_mode: str | None = None  # "reusable" (default) or "per-request"
    token_validity_seconds: int | None = None
    capabilities: Sequence[str] | None = None
    required_capability: str | None = None
    invoice_memo: str | None = None
    invoice_expiry_seconds: int | None = None
    private_invoices: bool | None = None
    service: str | None = None
    # How long the app may take to answer a per-request route (sizes its lease).
    upstream_timeout_seconds: float | None = None
    request_body_timeout_seconds: float | None = None
    # A dynamic price (routes.yaml's `pricing:` section: url, timeout_seconds, fallback, ...).
    pricing: Mapping[str, object] | None = None
    case_insensitive: bool | None = None  # `path` matched ignoring case
    allow_path_parameters: bool | None = None  # `;` in the path not refused (400)
    allow_encoded_percent: bool | None = None  # `%25` in the path not refused (400)

    def document(self) -> dict[str, object]:
        return _entries(self)


@dataclass(frozen=True)
class LndSettings:
    """The seller's LND, as routes.yaml's `lnd:` section (relative paths: against base_dir)."""

    host: str  # "127.0.0.1:10009"
    tls_cert: str | os.PathLike[str]
    macaroon: str | os.PathLike[str]  # invoice.macaroon is enough
    timeout_seconds: float | None = None

    def document(self) -> dict[str, object]:
        entries = _entries(self)
        for key in ("tls_cert", "macaroon"):
            entries[key] = os.fspath(getattr(self, key))
        return entries


def build_config(
    routes: Sequence[PricedRoute | Mapping[str, Any]],
    *,
    lnd: LndSettings,
    store_url: str,
    options: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> GatewayConfig:
    """The configuration of an embedded seller; raises ConfigErrors like the loader.

    `routes` items are PricedRoutes or routes.yaml entries as mappings; `options`
    holds any other top-level routes.yaml keys (`challenge_rate_limit`,
    `trusted_proxies`, `invalid_credential_status`, `verified_cache_size`, and
    `store` settings other than the URL).
    """
    document: dict[str, Any] = dict(options or {})
    given = {"routes", "lnd"} & document.keys()
    if given or "url" in (document.get("store") or {}):
        taken = sorted(given) or ["store.url"]
        raise ValueError(f"pass {', '.join(taken)} as arguments, not in options")
    store = dict(document.get("store") or {})
    store["url"] = store_url.replace("$", "$$")  # a literal URL: no ${VAR} references
    document["store"] = store
    document["lnd"] = lnd.document()
    document["routes"] = [
        r.document() if isinstance(r, PricedRoute) else {k: _plain(v) for k, v in r.items()}
        for r in routes
    ]
    try:
        text = yaml.safe_dump(document, sort_keys=False)
    except yaml.YAMLError as exc:
        message = f"values must be plain strings, numbers, booleans or lists: {exc}"
        raise ConfigErrors([ConfigError(SOURCE_NAME, 0, "", message)]) from None
    source = Path(base_dir if base_dir is not None else Path.cwd()) / "routes.yaml"
    try:
        return parse_config(text, source, SOURCE_NAME, check_files=check_files, embedded=True)
    except ConfigErrors as exc:
        raise ConfigErrors([replace(error, line=0) for error in exc.errors]) from None
