"""`cors:` sections (top level and per route) -> CorsPolicy.

Origins are compared byte for byte with the browser's `Origin` header, so
they must be exactly `scheme://host[:port]`: no path, no trailing slash.
"""

from __future__ import annotations

import re

import yaml

from gateway.config.model import ANY_ORIGIN, CorsPolicy
from gateway.config.nodes import Reader, Section, is_null
from gateway.l402.grammar import is_token

CORS_KEYS = frozenset(
    {"allow_origins", "allow_credentials", "allow_headers", "expose_headers", "max_age_seconds"}
)
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def _origins(s: Section) -> tuple[str, ...]:
    node = s.get("allow_origins")
    if node is None:
        s.missing("allow_origins")
        return ()
    if isinstance(node, yaml.ScalarNode) and not is_null(node):
        ok, value = s.reader.scalar(node, s.path("allow_origins"))
        if ok and value == ANY_ORIGIN:
            return (ANY_ORIGIN,)
        s.reader.error(node, s.path("allow_origins"), 'expected "*" or a list of origins')
        return ()
    origins: list[str] = []
    for index, (origin, item) in enumerate(s.string_list("allow_origins") or []):
        field = f"{s.path('allow_origins')}[{index}]"
        if origin == ANY_ORIGIN:
            s.reader.error(item, field, 'use allow_origins: "*" alone for any origin')
        elif _ORIGIN.fullmatch(origin) is None:
            s.reader.error(item, field, "must be scheme://host[:port] (no path or trailing /)")
        else:
            origins.append(origin.lower())
    return tuple(origins)


def _header_names(s: Section, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    items = s.string_list(key)
    if items is None:
        return default
    names: list[str] = []
    for index, (name, item) in enumerate(items):
        if not is_token(name):
            s.reader.error(item, f"{s.path(key)}[{index}]", "not a valid header name")
        else:
            names.append(name.lower())
    return tuple(names)


def parse_cors(reader: Reader, node: yaml.Node | None, field: str) -> CorsPolicy | None:
    """None when the section is absent (the route inherits the top-level policy)."""
    s = Section.of(reader, node, field, CORS_KEYS)
    if s is None:
        return None
    origins = _origins(s)
    credentials = s.boolean("allow_credentials", CorsPolicy.allow_credentials)
    if credentials and ANY_ORIGIN in origins:
        reader.error(
            s.get("allow_credentials") or s.node,
            s.path("allow_credentials"),
            "browsers refuse credentials with any origin: list the origins",
        )
    return CorsPolicy(
        allow_origins=origins,
        allow_credentials=credentials,
        allow_headers=_header_names(s, "allow_headers", CorsPolicy.allow_headers),
        expose_headers=_header_names(s, "expose_headers", CorsPolicy.expose_headers),
        max_age_seconds=s.integer("max_age_seconds", CorsPolicy.max_age_seconds, minimum=0),
    )
