"""The route table in force, with what deciding needs per route built once.

SIGHUP swaps in a new `RuntimeRoutes` as one object, so a request sees either
the old configuration or the new one, never a mix: the paywall takes the
table once per request (`Located.table`) and uses that route's mint request
and CORS policy. How a route is forwarded is the transport's business
(gateway.server.targets keys its upstream targets by this table's identity).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import CorsPolicy, GatewayConfig, Route
from gateway.l402.mint import MintRequest


def mint_request(route: Route) -> MintRequest | None:
    """What one challenge on `route` sells (None for a free route)."""
    if route.is_free:
        return None
    return MintRequest(
        route=route.name,
        service=route.service,
        price_msat=route.price_msat,
        memo=route.memo,
        expiry=route.invoice_expiry_seconds,
        private=route.private_invoices,
        capabilities=route.capabilities,
        validity_seconds=route.token_validity_seconds,
        single_use=route.single_use,
    )


@dataclass(frozen=True, slots=True)
class RouteRuntime:
    route: Route
    mint: MintRequest | None
    cors: CorsPolicy | None

    @property
    def name(self) -> str:
        return self.route.name


def cors_policy(config: GatewayConfig, route: Route) -> CorsPolicy | None:
    """The route's own policy, else the global one; `allow_origins: []` on a route turns
    the global policy off for it."""
    cors = route.cors if route.cors is not None else config.cors
    if cors is not None and not cors.allow_origins:
        return None
    return cors


@dataclass(frozen=True, eq=False)  # identity: transports key per-table state by it
class RuntimeRoutes:
    config: GatewayConfig
    by_name: dict[str, RouteRuntime]

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RuntimeRoutes:
        return cls(
            config,
            {
                route.name: RouteRuntime(route, mint_request(route), cors_policy(config, route))
                for route in config.routes.routes
            },
        )

    def match(self, host: str, path: str, method: str) -> RouteRuntime | None:
        route = self.config.routes.match(host, path, method)
        return None if route is None else self.by_name[route.name]


class RouteHolder:
    """Mutable cell for the current RuntimeRoutes (an app's state is frozen after start-up)."""

    def __init__(self, routes: RuntimeRoutes) -> None:
        self.current = routes
