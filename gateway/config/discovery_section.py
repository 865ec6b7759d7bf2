"""The `discovery:` section -> DiscoveryConfig, and the rule that keeps routes off its paths.

Discovery documents are answered on the public listener before any route is
matched (gateway.server.discovery_endpoint), so a route can never price or forward
them. A route aimed at them would silently lose those paths; the loader
refuses it instead, with a hint. Routes that match every path (their pattern
also matches `/`) are catch-alls: they keep everything else, documented.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config.model import DiscoveryConfig, Route
from gateway.config.nodes import Reader, Section
from gateway.config.openapi import load_openapi

DISCOVERY_KEYS = frozenset(
    {"enabled", "provider_name", "provider_uri", "node_pubkey", "max_age_seconds", "openapi_file"}
)
MAX_AGE_LIMIT = 86_400
MAX_PROVIDER_NAME = 256
_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")


def parse_discovery(top: Section) -> DiscoveryConfig:
    s = Section.of(top.reader, top.get("discovery"), "discovery", DISCOVERY_KEYS)
    if s is None:
        return DiscoveryConfig()
    r = s.reader
    name = s.string("provider_name", DiscoveryConfig.provider_name)
    if not name or len(name) > MAX_PROVIDER_NAME or not name.isprintable():
        node = s.get("provider_name") or s.node
        r.error(node, s.path("provider_name"), f"1 to {MAX_PROVIDER_NAME} printable characters")
    max_age = s.integer("max_age_seconds", DiscoveryConfig.max_age_seconds, minimum=0)
    if max_age > MAX_AGE_LIMIT:
        node = s.get("max_age_seconds") or s.node
        r.error(node, s.path("max_age_seconds"), f"at most {MAX_AGE_LIMIT} (one day)")
    openapi_file, openapi = _openapi(s)
    return DiscoveryConfig(
        enabled=s.boolean("enabled", DiscoveryConfig.enabled),
        provider_name=name,
        provider_uri=_provider_uri(s),
        node_pubkey=_node_pubkey(s),
        max_age_seconds=max_age,
        openapi_file=openapi_file,
        openapi=openapi,
    )


def _provider_uri(s: Section) -> str | None:
    text = s.opt_string("provider_uri")
    if text is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        s.reader.error(s.get("provider_uri") or s.node, s.path("provider_uri"), "an http(s) URL")
        return None
    return text


def _node_pubkey(s: Section) -> str | None:
    text = s.opt_string("node_pubkey")
    if text is None:
        return None
    if _PUBKEY.fullmatch(text) is None:
        node = s.get("node_pubkey") or s.node
        s.reader.error(node, s.path("node_pubkey"), "66 lower-case hex digits (02... or 03...)")
        return None
    return text


def _openapi(s: Section) -> tuple[Path | None, dict[str, Any] | None]:
    text = s.opt_string("openapi_file")
    node = s.get("openapi_file")
    if text is None or node is None:
        return None, None
    path = s.reader.file_path(node, s.path("openapi_file"), text)
    if not path.is_file():
        return path, None  # reported by file_path unless the caller skips file checks
    document, errors = load_openapi(path)
    s.reader.errors.extend(errors)
    return path, document


def check_routes(reader: Reader, routes: Sequence[Route], discovery: DiscoveryConfig) -> None:
    """Refuse a route whose path pattern targets a discovery path (catch-alls excepted)."""
    for index, route in enumerate(routes):
        if route.path.search("/") is not None:
            continue  # a catch-all: it keeps every other path
        for taken in sorted(discovery.paths):
            if route.path.search(taken) is not None:
                reader.error(
                    route.line,
                    f"routes[{index}].path",
                    f"matches {taken}, which the gateway answers itself (discovery); "
                    "narrow the pattern or set discovery.enabled: false",
                )
                break
