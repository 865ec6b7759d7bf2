"""A request located: the route it is for, and what a price source is told about it.

`Paywall.locate` builds a `Located` (gateway.paywall.decision); every
transport passes it back to `admit`. `no_match` is the answer when no route
takes the request; `price_query` what a route's price source learns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config.model import GrpcPricing
from gateway.http.paths import NormalPath
from gateway.paywall.refusals import MethodNotAllowed, MethodNotImplemented, NoRoute
from gateway.paywall.routes import RouteRuntime, RuntimeRoutes
from gateway.pricer.prices import PriceQuery, hook_headers
from gateway.pricer.requestview import RequestDetails, RequestView

# RFC 9110 §9 and RFC 5789 methods; anything else that no route lists is 501.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


@dataclass(frozen=True, slots=True)
class Located:
    """The route a request is for, in the table that was current when it arrived, and the
    method it was matched for (what a pricing hook is told)."""

    table: RuntimeRoutes
    runtime: RouteRuntime
    path: NormalPath
    method: str


def price_query(
    located: Located, headers: Iterable[tuple[str, str]], details: RequestDetails | None = None
) -> PriceQuery | None:
    """What the route's price source is told about this request (None: no hook)."""
    route = located.runtime.route
    hook = route.pricing
    if hook is None:
        return None
    view = None
    if isinstance(hook, GrpcPricing):  # an Aperture pricer reads the request itself
        view = RequestView(located.method.upper(), located.path.raw, list(headers), details)
    return PriceQuery(
        located.runtime.name,
        located.method.upper(),
        located.path.raw,
        hook_headers(headers, hook.headers),
        service=route.service,
        view=view,
    )


def no_match(table: RuntimeRoutes, host: str, path: str, method: str) -> Exception:
    """404, or 405 + Allow when the resource exists for other methods, or 501."""
    allowed = table.config.routes.allowed_methods(host, path)
    upper = method.upper()
    listed = any(r.methods is not None and upper in r.methods for r in table.config.routes.routes)
    if upper not in KNOWN_METHODS and not listed:
        return MethodNotImplemented(f"method {method[:20]!r} is not implemented")
    if allowed:
        return MethodNotAllowed(method, allowed)
    return NoRoute(f"no route for {method} {path[:200]}")
