"""The route table currently in force, with each route's proxy target built once.

SIGHUP swaps in a new `RuntimeRoutes` as one object, so a request sees either
the old configuration or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.model import GatewayConfig, IPNetwork, Route
from gateway.proxy.target import ProxyTarget


def build_target(route: Route) -> ProxyTarget:
    """The route's proxy target; the rewrite pattern is the one the config loader compiled."""
    target = ProxyTarget.create(
        route.upstream,
        extra_headers=dict(route.upstream_headers),
        timeout_seconds=route.upstream_timeout_seconds,
        max_body_bytes=route.max_body_bytes,
        tls_verify=route.upstream_tls_verify,
        ca_file=str(route.upstream_ca_file) if route.upstream_ca_file else None,
    )
    rewrite = route.path_rewrite
    if rewrite is None:
        return target
    return dataclasses.replace(target, path_rewrite=(rewrite.pattern, rewrite.replacement))


@dataclass(frozen=True)
class RuntimeRoutes:
    config: GatewayConfig
    targets: dict[str, ProxyTarget]

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RuntimeRoutes:
        """Build every route's target; failures (e.g. an unloadable CA file) name file:line."""
        targets: dict[str, ProxyTarget] = {}
        errors: list[ConfigError] = []
        for index, route in enumerate(config.routes.routes):
            try:
                targets[route.name] = build_target(route)
            except ValueError as exc:
                errors.append(
                    ConfigError(str(config.source), route.line, f"routes[{index}]", str(exc))
                )
        if errors:
            raise ConfigErrors(errors)
        return cls(config, targets)

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return self.config.trusted_proxies

    def match(self, host: str, path: str, method: str) -> Route | None:
        return self.config.routes.match(host, path, method)


class RouteHolder:
    """Mutable cell for the current RuntimeRoutes (an app's state is frozen after start-up)."""

    def __init__(self, routes: RuntimeRoutes) -> None:
        self.current = routes
