"""OPTIONS on a priced resource: answered by the gateway, never minted, never served unpaid.

OPTIONS asks what a resource supports; it buys nothing. Aperture answers every
OPTIONS itself without minting. Here the resource decides (first route whose
host and path match, whatever its methods):

- a free resource (or none): OPTIONS is an ordinary request (forwarded, or the
  embedded app's own);
- a priced resource whose route lists OPTIONS in `methods`: priced like any
  method the route lists;
- any other priced resource: the gateway answers 204 with `Allow` (the methods
  routes take for it) and nothing is minted or stored. Behind the proxy that
  spares an invoice per OPTIONS; embedded it is what keeps an app handler that
  accepts OPTIONS (aiohttp `add_route("*", ...)`, FastAPI `api_route(...,
  methods=["GET", "OPTIONS"])`) from serving the paid answer unpaid.

CORS preflights (OPTIONS + Origin + Access-Control-Request-Method) take the
same decision about who answers (`priced_resource`), and the answer carries
CORS headers instead (gateway.paywall.preflight). No framework import here.
"""

from __future__ import annotations

from gateway.paywall.refusals import GatewayError
from gateway.paywall.routes import RouteRuntime, RuntimeRoutes

# What `Allow` lists for a route that takes every method (CONNECT and TRACE are never
# forwarded usefully, so they are not advertised).
EVERY_METHOD = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class OptionsAnswered(GatewayError):
    """A non-preflight OPTIONS on a priced resource: 204 + Allow, no body, nothing minted."""

    status = 204
    reason = "options"

    def __init__(self, allow: tuple[str, ...]) -> None:
        super().__init__("options", headers=(("Allow", ", ".join(allow)),))


def priced_resource(table: RuntimeRoutes, host: str, path: str) -> RouteRuntime | None:
    """The first route whose host and path match (any method), when it is priced."""
    for route in table.config.routes.routes:
        if route.matches_resource(host, path):
            runtime = table.by_name[route.name]
            return runtime if runtime.mint is not None else None
    return None


def allow_list(table: RuntimeRoutes, host: str, path: str) -> tuple[str, ...]:
    """`Allow` for the resource: every method some route takes for it, OPTIONS included."""
    found = table.config.routes.allowed_methods(host, path)
    methods = set(EVERY_METHOD) if found is None else {*found, "OPTIONS"}
    return tuple(sorted(methods))


def options_answer(table: RuntimeRoutes, host: str, path: str) -> OptionsAnswered | None:
    """The gateway's own answer to a plain OPTIONS, or None when it is priced or not ours."""
    runtime = priced_resource(table, host, path)
    if runtime is None:
        return None
    methods = runtime.route.methods
    if methods is not None and "OPTIONS" in methods:
        return None  # the operator prices OPTIONS on this route
    return OptionsAnswered(allow_list(table, host, path))
