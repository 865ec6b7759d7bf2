"""The route table in force, with everything a request needs per route built once.

SIGHUP swaps in a new `RuntimeRoutes` as one object, so a request sees either
the old configuration or the new one, never a mix: the handler takes the
table once per request and uses that route's target and mint request.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.model import CorsPolicy, GatewayConfig, Route
from gateway.l402.mint import MintRequest
from gateway.proxy.target import ProxyTarget


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
    target: ProxyTarget
    mint: MintRequest | None
    cors: CorsPolicy | None

    @property
    def name(self) -> str:
        return self.route.name


@dataclass(frozen=True)
class RuntimeRoutes:
    config: GatewayConfig
    by_name: dict[str, RouteRuntime]

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RuntimeRoutes:
        """Build every route's runtime; failures (an unloadable CA file) name file:line."""
        by_name: dict[str, RouteRuntime] = {}
        errors: list[ConfigError] = []
        for index, route in enumerate(config.routes.routes):
            try:
                target = ProxyTarget.for_route(route)
            except ValueError as exc:
                errors.append(
                    ConfigError(str(config.source), route.line, f"routes[{index}]", str(exc))
                )
                continue
            cors = route.cors if route.cors is not None else config.cors
            if cors is not None and not cors.allow_origins:
                cors = None  # `allow_origins: []` on a route turns the global policy off
            by_name[route.name] = RouteRuntime(route, target, mint_request(route), cors)
        if errors:
            raise ConfigErrors(errors)
        return cls(config, by_name)

    def match(self, host: str, path: str, method: str) -> RouteRuntime | None:
        route = self.config.routes.match(host, path, method)
        return None if route is None else self.by_name[route.name]


class RouteHolder:
    """Mutable cell for the current RuntimeRoutes (an app's state is frozen after start-up)."""

    def __init__(self, routes: RuntimeRoutes) -> None:
        self.current = routes
