"""The one decision procedure for a request, whatever carries it (HTTP/1.1, HTTP/2, embedded).

`locate` normalises the path and finds the route (the priced path is the
forwarded path); `admit` decides payment: no credential -> a fresh
challenge (within the client's `challenge_rate_limit`, at the price of the
route's pricing hook when it has one), a refused one -> a challenge or 409,
a valid one -> admitted (a single-use token leased). Every
refusal is raised as a typed `Refusal`; each transport renders it its own
way (aiohttp's error middleware, the HTTP/2 engine's trailers-only answer,
an ASGI response). No framework imports here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.http.clientinfo import ClientInfo
from gateway.http.paths import BadPath, NormalPath, normalize
from gateway.l402.errors import L402Error, Reason
from gateway.l402.verify import VerifiedToken
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.challenges import ChallengeIssuer
from gateway.paywall.leases import Lease, LeaseKeeper
from gateway.paywall.ratelimit import client_key
from gateway.paywall.routes import RouteHolder, RouteRuntime, RuntimeRoutes
from gateway.paywall.usage import UsageCounter
from gateway.paywall.verifier import Authenticator, credential_headers
from gateway.pricer.hook import PriceQuery, hook_headers
from gateway.server.errors import (
    BadRequestPath,
    MethodNotAllowed,
    MethodNotImplemented,
    NoRoute,
    PaymentRequired,
    TokenInUse,
)

# RFC 9110 §9 and RFC 5789 methods; anything else that no route lists is 501.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


@dataclass(frozen=True)
class Services:
    """What deciding needs once the store and LND are open."""

    auth: Authenticator
    issuer: ChallengeIssuer
    leases: LeaseKeeper
    usage: UsageCounter


@dataclass(frozen=True, slots=True)
class Located:
    """The route a request is for, in the table that was current when it arrived, and the
    method it was matched for (what a pricing hook is told)."""

    table: RuntimeRoutes
    runtime: RouteRuntime
    path: NormalPath
    method: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """Go ahead. `authorization` is the one value to forward upstream (None: forward none)."""

    token: VerifiedToken | None  # None on a free route
    lease: Lease | None = None
    authorization: str | None = field(default=None, repr=False)


class Paywall:
    def __init__(
        self, routes: RouteHolder, metrics: GatewayMetrics, services: Services | None = None
    ) -> None:
        self.routes = routes
        self._metrics = metrics
        self._services = services

    def attach(self, services: Services) -> None:
        """Called once by the app's start-up context, when the services exist."""
        self._services = services

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("Paywall used before its services were attached")
        return self._services

    def locate(self, host: str, raw_path: str, method: str) -> Located:
        """Normalise and match; raises BadRequestPath, NoRoute, MethodNotAllowed (405) or
        MethodNotImplemented (501)."""
        table = self.routes.current
        try:
            path = normalize(raw_path)
        except BadPath as exc:
            raise BadRequestPath(exc.reason) from None
        runtime = table.match(host, path.decoded, method)
        if runtime is None:
            raise no_match(table, host, path.decoded, method)
        return Located(table, runtime, path, method)

    async def admit(
        self, located: Located, headers: Iterable[tuple[str, str]], client: ClientInfo
    ) -> Admitted:
        """Decide payment for a located request; raises a Refusal (PaymentRequired, TokenInUse,
        ChallengeRateLimited, LightningUnavailable, StoreUnavailable), after counting it."""
        runtime = located.runtime
        if runtime.mint is None:
            return Admitted(None)
        if runtime.route.pricing is not None:
            headers = list(headers)  # read twice: credentials, then the hook's header values
        services = self.services
        try:
            admission = await services.auth.admit(credential_headers(headers), runtime.route)
            if admission is None:
                raise await self._demand_payment(located, client, None, headers)
            lease = None
            if runtime.route.single_use:
                lease = await services.leases.take(admission.token, runtime.route)
        except L402Error as exc:
            raise await self._refuse(located, client, exc, headers) from None
        self._metrics.route(runtime.name).paid_requests.inc()
        services.usage.add(runtime.name)
        forwarded = admission.authorization if runtime.route.forward_authorization else None
        return Admitted(admission.token, lease, forwarded)

    async def _demand_payment(
        self,
        located: Located,
        client: ClientInfo,
        refused: L402Error | None,
        headers: Iterable[tuple[str, str]],
    ) -> PaymentRequired:
        config = located.table.config
        return await self.services.issuer.demand_payment(
            located.runtime,
            client_key(client.address, config.challenge_rate_limit.ipv6_prefix),
            refused,
            config.invalid_credential_status,
            price_query(located, headers),
        )

    async def _refuse(
        self,
        located: Located,
        client: ClientInfo,
        exc: L402Error,
        headers: Iterable[tuple[str, str]],
    ) -> TokenInUse | PaymentRequired:
        name = located.runtime.name
        self._metrics.auth_failures.labels(route=name, reason=exc.reason.value).inc()
        if exc.reason is Reason.IN_USE:
            return TokenInUse()
        return await self._demand_payment(located, client, exc, headers)


def price_query(located: Located, headers: Iterable[tuple[str, str]]) -> PriceQuery | None:
    """What the route's pricing hook is told about this request (None: no hook)."""
    hook = located.runtime.route.pricing
    if hook is None:
        return None
    return PriceQuery(
        located.runtime.name,
        located.method.upper(),
        located.path.raw,
        hook_headers(headers, hook.headers),
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
