"""Serving the discovery documents on the public listener, before any route is matched.

`/.well-known/l402.json` (and `/.well-known/l402-openapi.json` when the
operator gave an OpenAPI file) are answered here, whatever the routes say: a
discovery document is never priced, never forwarded, and a route can never
take its path (the loader refuses routes aimed at it). The path is compared
in the gateway's normal form (gateway.http.paths), so `//.well-known/...`
or `%2Ewell-known` cannot slip past to a catch-all route either.

The documents are public catalog data: `Access-Control-Allow-Origin: *`,
`Cache-Control: public, max-age=N`, a strong `ETag` (a hash of the body) with
`304 Not Modified` for `If-None-Match`. Each is built once per route table
and per set of host-specific routes the request's host can reach, then kept
(at most MAX_RENDERED variants, least recently used dropped); a SIGHUP that
swaps the table starts afresh, so a reload changes them at once.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.config.model import DISCOVERY_MANIFEST_PATH, GatewayConfig
from gateway.discovery.documents import manifest, priced_openapi
from gateway.http.paths import BadPath, normalize
from gateway.paywall.access import AccessRecord
from gateway.paywall.refusals import MethodNotAllowed
from gateway.paywall.routes import RouteHolder, RuntimeRoutes

MAX_RENDERED = 64
ALLOWED = frozenset({"GET", "HEAD", "OPTIONS"})
_MARK = "well-known"  # every discovery path holds it; a path without it or `%` needs no parsing


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: str


def render(document: dict[str, Any]) -> Rendered:
    body = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return Rendered(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison, as If-None-Match requires."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class DiscoveryHandler:
    """Answers discovery requests; `answer` returns None for every other request."""

    def __init__(self, routes: RouteHolder) -> None:
        self._routes = routes
        self._table: RuntimeRoutes | None = None
        self._rendered: OrderedDict[tuple[str, tuple[bool, ...]], Rendered] = OrderedDict()

    def answer(self, request: web.BaseRequest, record: AccessRecord) -> web.Response | None:
        table = self._routes.current
        discovery = table.config.discovery
        if not discovery.enabled:
            return None
        raw = request.rel_url.raw_path
        if _MARK not in raw and "%" not in raw:
            return None
        try:
            path = normalize(raw)
        except BadPath:
            return None  # the route lookup refuses it with its reason
        if path.decoded not in discovery.paths:
            return None
        record.path = path.raw
        record.outcome = "discovery"
        return self._respond(request, table, path.decoded)

    def _respond(self, request: web.BaseRequest, table: RuntimeRoutes, which: str) -> web.Response:
        discovery = table.config.discovery
        headers = {"Access-Control-Allow-Origin": "*"}
        if request.method == "OPTIONS":
            headers["Allow"] = ", ".join(sorted(ALLOWED))
            headers["Access-Control-Allow-Methods"] = "GET, HEAD"
            headers["Access-Control-Allow-Headers"] = "if-none-match"
            headers["Access-Control-Max-Age"] = "600"
            return web.Response(status=204, headers=headers)
        if request.method not in ALLOWED:
            raise MethodNotAllowed(request.method[:20], ALLOWED)
        rendered = self._document(table, which, request.host)
        headers["Cache-Control"] = f"public, max-age={discovery.max_age_seconds}"
        headers["ETag"] = rendered.etag
        headers["Access-Control-Expose-Headers"] = "ETag"
        headers["X-Content-Type-Options"] = "nosniff"
        if which == DISCOVERY_MANIFEST_PATH and discovery.openapi is not None:
            headers["Link"] = '</.well-known/l402-openapi.json>; rel="service-desc"'
        offered = request.headers.get("If-None-Match")
        if offered is not None and etag_matches(offered, rendered.etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=rendered.body, content_type="application/json", headers=headers)

    def _document(self, table: RuntimeRoutes, which: str, host: str) -> Rendered:
        if table is not self._table:
            self._table = table
            self._rendered.clear()
        routes = table.config.routes
        key = (which, tuple(r.matches_host(host) for r in routes.routes if r.host is not None))
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = render(self._build(table.config, which, host))
            self._rendered[key] = rendered
            while len(self._rendered) > MAX_RENDERED:
                self._rendered.popitem(last=False)
        else:
            self._rendered.move_to_end(key)
        return rendered

    @staticmethod
    def _build(config: GatewayConfig, which: str, host: str) -> dict[str, Any]:
        if which == DISCOVERY_MANIFEST_PATH:
            return manifest(config.discovery, config.routes, host, config.payment)
        return priced_openapi(config.discovery, config.routes, host, config.payment)
