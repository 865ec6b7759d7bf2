"""Where each route of the table in force is forwarded: HTTP/1.1 and HTTP/2 upstream targets.

Targets are built once per route table and kept beside it, keyed by the
table's identity, so a request forwards with the targets of the table it was
located in even while a reload swaps tables. `prepare` builds (and checks)
a new table's targets before it is put in force: the one thing that can still
fail there is loading an `upstream_ca_file`, reported with file and line like
any other configuration error. gRPC targets are built on first use: most
routes never see an HTTP/2 request.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.model import GatewayConfig, Route
from gateway.proxy.target import ProxyTarget, tls_context

if TYPE_CHECKING:  # the HTTP/2 engine loads with its first connection (server.edge)
    from gateway.h2engine.api import H2Target
    from gateway.paywall.routes import RouteRuntime, RuntimeRoutes


def build_targets(config: GatewayConfig) -> dict[str, ProxyTarget]:
    """Every route's HTTP/1.1 target; raises ConfigErrors naming file:line of each failure."""
    targets: dict[str, ProxyTarget] = {}
    errors: list[ConfigError] = []
    for index, route in enumerate(config.routes.routes):
        try:
            targets[route.name] = ProxyTarget.for_route(route)
        except ValueError as exc:
            errors.append(ConfigError(str(config.source), route.line, f"routes[{index}]", str(exc)))
    if errors:
        raise ConfigErrors(errors)
    return targets


def h2_target(route: Route, target: ProxyTarget) -> H2Target:
    """The route's upstream as an HTTP/2 server: h2c for http://, TLS with ALPN h2 for https://."""
    from gateway.h2engine.api import H2Target

    url = target.upstream
    tls = None
    if url.scheme == "https":
        ca = str(route.upstream_ca_file) if route.upstream_ca_file else None
        tls = tls_context(route.upstream_tls_verify, ca, alpn=("h2",))
    host = url.host or ""
    port = url.explicit_port or (443 if url.scheme == "https" else 80)
    return H2Target(host, port, tls, f"{host}:{port}", route.upstream_timeout_seconds)


class _TableTargets:
    __slots__ = ("h2", "http")

    def __init__(self, http: dict[str, ProxyTarget]) -> None:
        self.http = http
        self.h2: dict[str, H2Target] = {}


class RouteTargets:
    """Upstream targets per route table (weakly keyed: a replaced table's go with it)."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[RuntimeRoutes, _TableTargets] = (
            weakref.WeakKeyDictionary()
        )

    def prepare(self, table: RuntimeRoutes) -> None:
        """Build a table's targets before it is put in force; raises ConfigErrors."""
        if table not in self._tables:
            self._tables[table] = _TableTargets(build_targets(table.config))

    def _of(self, table: RuntimeRoutes) -> _TableTargets:
        targets = self._tables.get(table)
        if targets is None:
            self.prepare(table)
            targets = self._tables[table]
        return targets

    def http(self, table: RuntimeRoutes, runtime: RouteRuntime) -> ProxyTarget:
        return self._of(table).http[runtime.name]

    def h2(self, table: RuntimeRoutes, runtime: RouteRuntime) -> H2Target:
        targets = self._of(table)
        target = targets.h2.get(runtime.name)
        if target is None:
            target = h2_target(runtime.route, targets.http[runtime.name])
            targets.h2[runtime.name] = target
        return target
