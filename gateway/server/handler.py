"""The public listener's one handler: normalise the path, match a route, demand or
check payment, forward.

Built once with its collaborators (no `request.app[...]` lookups), so the
whole request path runs in unit tests with an in-memory invoice source and an
in-memory SQLite store. Order for a priced route: normalise the path (the
priced path is the forwarded path) -> match -> parse the credential (none:
challenge, if the client's `challenge_rate_limit` allows another, else 429)
-> verify (cached) -> lease a single-use token -> forward
(gateway.server.forwarding). Every refusal is raised as a typed `Refusal`
and rendered by the error middleware.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from gateway.l402.errors import L402Error, Reason
from gateway.metrics import GatewayMetrics
from gateway.proxy.forwarded import ClientInfo
from gateway.ratelimit import client_key
from gateway.requestpath import BadPath, NormalPath, normalize
from gateway.server.auth import Authenticator, credential_headers
from gateway.server.challenges import ChallengeIssuer
from gateway.server.cors import PREFLIGHT, is_preflight, preflight_response
from gateway.server.errors import (
    BadRequestPath,
    MethodNotAllowed,
    MethodNotImplemented,
    NoRoute,
    PaymentRequired,
    TokenInUse,
)
from gateway.server.forwarding import Forwarder
from gateway.server.leases import Lease, LeaseKeeper
from gateway.server.reqkeys import CORS, ERROR, OUTCOME, PATH, ROUTE, TOKEN_ID
from gateway.server.runtime import RouteHolder, RouteRuntime, RuntimeRoutes
from gateway.server.usage import UsageCounter

# RFC 9110 §9 and RFC 5789 methods; anything else that no route lists is 501.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


@dataclass(frozen=True)
class Services:
    """What the handler needs once the store, LND and the upstream pool are open."""

    auth: Authenticator
    issuer: ChallengeIssuer
    leases: LeaseKeeper
    forwarder: Forwarder
    usage: UsageCounter


class PublicHandler:
    def __init__(
        self, routes: RouteHolder, metrics: GatewayMetrics, services: Services | None = None
    ) -> None:
        self._routes = routes
        self._metrics = metrics
        self._services = services

    def attach(self, services: Services) -> None:
        """Called once by the app's start-up context, when the services exist."""
        self._services = services

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("PublicHandler used before its services were attached")
        return self._services

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        table = self._routes.current
        path = _normal_path(request)
        request[PATH] = path.raw
        preflight = is_preflight(request)
        method = request.headers[PREFLIGHT] if preflight else request.method
        runtime = table.match(request.host, path.decoded, method)
        if runtime is None:
            raise _no_match(table, request.host, path.decoded, method)
        request[ROUTE] = runtime.name
        if runtime.cors is not None:
            request[CORS] = runtime.cors
        if preflight:
            request[OUTCOME] = "preflight"
            return preflight_response(request, runtime.cors)
        config = table.config
        peer = request.transport.get_extra_info("peername") if request.transport else None
        headers = request.headers
        client = ClientInfo.resolve(
            peer[0] if peer else None,
            headers.getall("X-Forwarded-For", ()),
            headers.getall("X-Forwarded-Proto", ()),
            headers.getall("X-Forwarded-Host", ()),
            request.scheme,
            request.host,
            config.trusted_proxies,
        )
        services = self.services
        if runtime.mint is None:
            request[OUTCOME] = "free"
            return await services.forwarder.forward(
                request, runtime, path, client, None, started, None
            )

        try:
            admission = await services.auth.admit(
                credential_headers(headers.items()), runtime.route
            )
            if admission is None:
                raise await self._demand_payment(runtime, client, table, None)
            token = admission.token
            lease: Lease | None = None
            if runtime.route.single_use:
                lease = await services.leases.take(token, runtime.route)
        except L402Error as exc:
            request[ERROR] = exc.detail  # secret-free by the core's contract
            raise await self._refuse(runtime, client, table, exc) from None

        self._metrics.route(runtime.name).paid_requests.inc()
        services.usage.add(runtime.name)
        request[OUTCOME] = "paid"
        request[TOKEN_ID] = token.token_id_hex
        forwarded = admission.authorization if runtime.route.forward_authorization else None
        return await services.forwarder.forward(
            request, runtime, path, client, forwarded, started, lease
        )

    async def _demand_payment(
        self,
        runtime: RouteRuntime,
        client: ClientInfo,
        table: RuntimeRoutes,
        refused: L402Error | None,
    ) -> PaymentRequired:
        limit = table.config.challenge_rate_limit
        return await self.services.issuer.demand_payment(
            runtime,
            client_key(client.address, limit.ipv6_prefix),
            refused,
            table.config.invalid_credential_status,
        )

    async def _refuse(
        self, runtime: RouteRuntime, client: ClientInfo, table: RuntimeRoutes, exc: L402Error
    ) -> TokenInUse | PaymentRequired:
        """The refusal for a credential that cannot buy this request (to be raised)."""
        self._metrics.auth_failures.labels(route=runtime.name, reason=exc.reason.value).inc()
        if exc.reason is Reason.IN_USE:
            return TokenInUse()
        return await self._demand_payment(runtime, client, table, exc)


def _normal_path(request: web.Request) -> NormalPath:
    try:
        return normalize(request.rel_url.raw_path)
    except BadPath as exc:
        raise BadRequestPath(exc.reason) from None


def _no_match(table: RuntimeRoutes, host: str, path: str, method: str) -> Exception:
    """404, or 405 + Allow when the resource exists for other methods, or 501."""
    allowed = table.config.routes.allowed_methods(host, path)
    if method.upper() not in KNOWN_METHODS and not _listed_anywhere(table, method):
        return MethodNotImplemented(f"method {method[:20]!r} is not implemented")
    if allowed:
        return MethodNotAllowed(method, allowed)
    return NoRoute(f"no route for {method} {path[:200]}")


def _listed_anywhere(table: RuntimeRoutes, method: str) -> bool:
    return any(
        r.methods is not None and method.upper() in r.methods for r in table.config.routes.routes
    )
