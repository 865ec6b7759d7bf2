"""routes.yaml -> GatewayConfig, with every error located by file, line and field."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config.admin import parse_admin
from gateway.config.cors import parse_cors
from gateway.config.discovery_section import check_routes, parse_discovery
from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.model import (
    ChallengeRateLimit,
    GatewayConfig,
    IPNetwork,
    LightningConfig,
    ListenConfig,
    Listener,
    LndConfig,
    RouteTable,
    StoreConfig,
)
from gateway.config.nodes import Reader, Section
from gateway.config.payment_section import check_payment, parse_payment
from gateway.config.routes import PROXY_ONLY_TOP_KEYS, parse_routes
from gateway.store.url import parse_store_url

TOP_KEYS = frozenset(
    {
        "listen",
        "trusted_proxies",
        "lightning",
        "lnd",
        "store",
        "verified_cache_size",
        "challenge_rate_limit",
        "invalid_credential_status",
        "cors",
        "discovery",
        "admin",
        "payment",
        "routes",
    }
)
DEFAULT_PUBLIC = "127.0.0.1:8080"
DEFAULT_ADMIN = "127.0.0.1:8402"  # clear of Prometheus (9090) and its exporters' 9100-9999
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
DEFAULT_LND_HOST = "127.0.0.1:10009"
DEFAULT_STORE_URL = "sqlite:///var/lib/l402-gateway/tokens.db"
DEFAULT_VERIFIED_CACHE_SIZE = 10_000
DEFAULT_PRUNE_AFTER_DAYS = 7
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)


def load_config(
    path: str | os.PathLike[str],
    *,
    check_files: bool = True,
    environ: Mapping[str, str] | None = None,
    defer_env: bool = False,
    embedded: bool = False,
) -> GatewayConfig:
    """Load and validate; raises ConfigErrors listing every problem found.

    `check_files=False` skips the existence checks for tls_cert, macaroon and
    upstream_ca_file (for checking a config on a machine other than the server).
    `defer_env=True` (operator commands) puts problems caused by an unset
    `${VAR}` in `config.deferred` instead of raising (gateway.config.nodes.Reader).
    `embedded=True` reads the file for the embedded middleware (gateway.embed):
    routes have no upstream, and proxy-only keys are refused.
    """
    source = Path(path)
    display = str(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigErrors([ConfigError(display, 0, "", f"cannot read: {reason}")]) from None
    return parse_config(
        text,
        source,
        display,
        check_files=check_files,
        environ=environ,
        defer_env=defer_env,
        embedded=embedded,
    )


def parse_config(
    text: str,
    source: Path,
    display: str,
    *,
    check_files: bool = True,
    environ: Mapping[str, str] | None = None,
    defer_env: bool = False,
    embedded: bool = False,
) -> GatewayConfig:
    """Validate routes.yaml text with every rule of `load_config`; `source` is where it
    stands for (relative paths resolve against its directory), `display` names it in errors.

    The one validation of a configuration: a file, or a document built in code
    by the embedded middleware, go through exactly these rules.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        message = f"YAML syntax: {exc.problem or exc.context}"
        raise ConfigErrors([ConfigError(display, line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(display, 0, "", f"YAML: {exc}")]) from None
    reader = Reader(
        display,
        source.resolve().parent,
        os.environ if environ is None else environ,
        check_files,
        defer_env=defer_env,
    )
    if root is None:
        raise ConfigErrors([ConfigError(display, 1, "", "the file is empty")])
    top = Section.of(reader, root, "", TOP_KEYS)
    if top is None:
        raise ConfigErrors(reader.errors)
    if embedded:
        top.refuse(PROXY_ONLY_TOP_KEYS)
    listen = _listen(top)
    config = GatewayConfig(
        source=source.resolve(),
        listen=listen,
        trusted_proxies=_trusted_proxies(top),
        lightning=_lightning(top),
        store=_store(top),
        verified_cache_size=top.integer(
            "verified_cache_size", DEFAULT_VERIFIED_CACHE_SIZE, minimum=0
        ),
        routes=RouteTable(parse_routes(reader, top.get("routes"), top.node, embedded=embedded)),
        challenge_rate_limit=_challenge_rate_limit(top),
        invalid_credential_status=_invalid_credential_status(top),
        cors=parse_cors(reader, top.get("cors"), "cors"),
        discovery=parse_discovery(top),
        admin=parse_admin(reader, top.get("admin")),
        payment=parse_payment(top, default_realm=str(listen.public)),
        deferred=tuple(reader.deferred),
    )
    check_routes(reader, config.routes.routes, config.discovery)
    check_payment(top, config)
    if reader.errors:
        raise ConfigErrors(reader.errors)
    return config


def parse_host_port(text: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError('expected "host:port"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError('IPv6 hosts need brackets: "[::1]:8402"')
    else:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if _HOSTNAME.fullmatch(host) is None:
                raise ValueError(f"bad host {host!r}") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port {port_text!r}")
    return host, int(port_text)


def _address(section: Section | None, key: str, default: str, field: str) -> Listener:
    text = section.string(key, default) if section is not None else default
    try:
        host, port = parse_host_port(text)
    except ValueError as exc:
        assert section is not None  # the defaults are valid
        section.reader.error(section.get(key) or section.node, field, str(exc))
        return Listener("127.0.0.1", 1)
    return Listener(host, port)


_LISTEN_KEYS = frozenset(
    {"public", "admin", "max_connections", "header_timeout_seconds", "keepalive_timeout_seconds"}
)


def _listen(top: Section) -> ListenConfig:
    s = Section.of(top.reader, top.get("listen"), "listen", _LISTEN_KEYS)
    public = _address(s, "public", DEFAULT_PUBLIC, "listen.public")
    admin = _address(s, "admin", DEFAULT_ADMIN, "listen.admin")
    if s is None:
        return ListenConfig(public, admin)
    if public == admin:
        s.reader.error(s.get("admin") or s.node, "listen.admin", "same address as listen.public")
    return ListenConfig(
        public,
        admin,
        max_connections=s.opt_integer("max_connections", None, minimum=1),
        header_timeout_seconds=s.positive_number(
            "header_timeout_seconds", ListenConfig.header_timeout_seconds
        ),
        keepalive_timeout_seconds=s.positive_number(
            "keepalive_timeout_seconds", ListenConfig.keepalive_timeout_seconds
        ),
    )


def _invalid_credential_status(top: Section) -> int:
    status = top.integer("invalid_credential_status", GatewayConfig.invalid_credential_status)
    if status not in (401, 402):
        node = top.get("invalid_credential_status") or top.node
        top.reader.error(node, "invalid_credential_status", "must be 402 (Aperture) or 401")
        return GatewayConfig.invalid_credential_status
    return status


def _trusted_proxies(top: Section) -> tuple[IPNetwork, ...]:
    items = top.string_list("trusted_proxies")
    if items is None:
        return tuple(ipaddress.ip_network(c) for c in DEFAULT_TRUSTED_PROXIES)
    networks: list[IPNetwork] = []
    for index, (text, node) in enumerate(items):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            top.reader.error(node, f"trusted_proxies[{index}]", f"bad CIDR: {exc}")
    return tuple(networks)


LIGHTNING_BACKENDS = ("lnd",)
_LND_KEYS = frozenset({"host", "tls_cert", "macaroon", "timeout_seconds", "refund_macaroon"})


def _lightning(top: Section) -> LightningConfig:
    """`lightning: {backend: lnd, ...}`, or the older `lnd:` section (one of the two)."""
    node, legacy = top.get("lightning"), top.get("lnd")
    if node is not None and legacy is not None:
        top.reader.error(legacy, "lnd", "give either lightning: or lnd:, not both")
    if node is None:
        return _lnd(top, legacy, "lnd", _LND_KEYS)
    s = Section.of(top.reader, node, "lightning", _LND_KEYS | {"backend"})
    if s is None:
        return _lnd(top, None, "lightning", _LND_KEYS)
    backend = s.string("backend", "lnd")
    if backend not in LIGHTNING_BACKENDS:
        s.reader.error(
            s.get("backend") or s.node,
            "lightning.backend",
            f"unknown backend {backend!r}; expected one of: {', '.join(LIGHTNING_BACKENDS)}",
        )
    return _lnd(top, node, "lightning", _LND_KEYS | {"backend"})


def _lnd(top: Section, node: Any, name: str, keys: frozenset[str]) -> LndConfig:
    s = Section.of(top.reader, node, name, keys)
    if s is None:
        if node is None:
            top.missing("lightning")
        return LndConfig(DEFAULT_LND_HOST, Path(), Path(), 5.0)
    host = _address(s, "host", DEFAULT_LND_HOST, f"{name}.host")
    files: list[Path | None] = []
    for key in ("tls_cert", "macaroon", "refund_macaroon"):
        required = key != "refund_macaroon"
        text = s.string(key, "", required=required)
        value_node = s.get(key)
        if text and value_node is not None:
            files.append(s.reader.file_path(value_node, f"{name}.{key}", text))
        else:
            if value_node is not None and not text:
                s.reader.error(value_node, f"{name}.{key}", "must not be empty")
            files.append(Path() if required else None)
    tls_cert, macaroon, refund = files
    assert tls_cert is not None
    assert macaroon is not None
    if refund is not None and refund == macaroon:
        s.reader.error(
            s.get("refund_macaroon") or s.node,
            f"{name}.refund_macaroon",
            "must not be the invoice macaroon: refunds need their own least-privilege "
            "macaroon (docs/payment-scheme.md)",
        )
    timeout = s.positive_number("timeout_seconds", 5.0)
    return LndConfig(str(host), tls_cert, macaroon, timeout, refund, section=name)


def _store(top: Section) -> StoreConfig:
    keys = frozenset({"url", "prune_after_days", "timeout_seconds"})
    s = Section.of(top.reader, top.get("store"), "store", keys)
    if s is None:
        return StoreConfig(parse_store_url(DEFAULT_STORE_URL).url, DEFAULT_PRUNE_AFTER_DAYS)
    prune_after_days = s.integer("prune_after_days", DEFAULT_PRUNE_AFTER_DAYS, minimum=0)
    timeout = s.positive_number("timeout_seconds", StoreConfig.timeout_seconds)
    text = s.string("url", DEFAULT_STORE_URL)
    node = s.get("url") or s.node
    text = s.reader.interpolate(node, "store.url", text)
    try:
        return StoreConfig(parse_store_url(text, s.reader.base_dir).url, prune_after_days, timeout)
    except ValueError as exc:
        s.reader.error(node, "store.url", str(exc))
        return StoreConfig(text, prune_after_days, timeout)


def _challenge_rate_limit(top: Section) -> ChallengeRateLimit:
    default = ChallengeRateLimit()
    keys = frozenset({"per_minute", "burst", "ipv6_prefix"})
    s = Section.of(top.reader, top.get("challenge_rate_limit"), "challenge_rate_limit", keys)
    if s is None:
        return default
    per_minute = s.integer("per_minute", default.per_minute, minimum=0)
    burst = s.integer("burst", default.burst, minimum=1)
    prefix = s.integer("ipv6_prefix", default.ipv6_prefix, minimum=1)
    if prefix > 128:
        s.reader.error(s.get("ipv6_prefix") or s.node, s.path("ipv6_prefix"), "must be <= 128")
        prefix = default.ipv6_prefix
    return ChallengeRateLimit(per_minute, burst, prefix)
