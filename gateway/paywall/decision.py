"""The one decision procedure for a request, whatever carries it (HTTP/1.1, HTTP/2, embedded).

`locate` normalises the path and finds the route (the priced path is the
forwarded path); `admit` decides payment: no credential -> a fresh
challenge (within the client's `challenge_rate_limit`, at the price of the
route's pricing hook when it has one), a refused one -> a challenge or 409,
a valid one -> a `Sale` (a single-use token leased), which the transport
settles after the answer (gateway.paywall.sale). Every refusal is raised as a
typed `Refusal` (gateway.paywall.refusals); each transport sends the answer
gateway.paywall.answers renders for it. No framework imports here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config.model import GrpcPricing
from gateway.http.clientinfo import ClientInfo
from gateway.http.paths import BadPath, NormalPath, normalize
from gateway.l402.errors import L402Error, Reason
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.access import AccessRecord
from gateway.paywall.credentialkeys import l402_key
from gateway.paywall.holds import Hold
from gateway.paywall.metered import BundleExhausted
from gateway.paywall.meters import hold_for
from gateway.paywall.pricing import PriceQuery, hook_headers
from gateway.paywall.ratelimit import client_key
from gateway.paywall.refusals import (
    BadRequestPath,
    MethodNotAllowed,
    MethodNotImplemented,
    NoRoute,
    PaymentRequired,
    TokenInUse,
)
from gateway.paywall.requestquotas import unpaid_subject
from gateway.paywall.requestview import RequestDetails, RequestView
from gateway.paywall.routes import RouteHolder, RouteRuntime, RuntimeRoutes
from gateway.paywall.sale import Sale
from gateway.paywall.services import Services
from gateway.paywall.verifier import credential_headers

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


class Paywall:
    def __init__(
        self, routes: RouteHolder, metrics: GatewayMetrics, services: Services | None = None
    ) -> None:
        self.routes = routes
        self._metrics = metrics
        self._services = services

    def attach(self, services: Services) -> None:
        """Called once by the start-up context, when the services exist."""
        self._services = services

    def detach(self) -> None:
        """Called at shutdown: priced requests are refused (503) from now on."""
        self._services = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("Paywall used before its services were attached")
        return self._services

    @property
    def running(self) -> bool:
        return self._services is not None

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
        self,
        located: Located,
        headers: Iterable[tuple[str, str]],
        client: ClientInfo,
        record: AccessRecord | None = None,
        *,
        arrived: float | None = None,
        details: RequestDetails | None = None,
    ) -> Sale:
        """Decide payment for a located request; raises a Refusal (PaymentRequired, TokenInUse,
        ChallengeRateLimited, LightningUnavailable, StoreUnavailable), after counting it.

        `arrived` (perf_counter) is when the request reached the gateway: the time the
        gateway adds is counted from it (default: the record's start, else now).
        `details` (query, body prefix) is read only by routes that need it: metered
        ones and Aperture pricers (gateway.paywall.requestview)."""
        if arrived is None:
            arrived = record.started if record is not None else time.perf_counter()
        if record is not None:
            record.route = located.runtime.name
            record.path = located.path.raw
        runtime = located.runtime
        series = self._metrics.route(runtime.name)
        if runtime.mint is None:  # free: sold even before start-up (no lease, no store)
            if runtime.route.rate_limits and self._services is not None:
                prefix = located.table.config.challenge_rate_limit.ipv6_prefix
                subject = unpaid_subject(client, prefix)
                await self._services.quotas.limit(runtime.route, located.path.decoded, subject)
            return Sale(
                runtime,
                series,
                hold=None,
                token=None,
                authorization=None,
                arrived=arrived,
                record=record,
            )
        services = self.services
        route = runtime.route
        if route.pricing is not None or route.metered or route.freebies is not None:
            headers = list(headers)  # read again: a hook's or a pricer's header values
        try:
            admission = await services.auth.admit(credential_headers(headers), route)
            if admission is None:
                if route.freebies is not None:  # unpaid, within the client's allowance
                    free = await self._freebie(located, client, arrived, record)
                    if free is not None:
                        return free
                raise await self._demand_payment(located, client, None, headers, details)
            hold: Hold | None = await hold_for(
                route=route,
                method=located.method.upper(),
                path=located.path.raw,
                decoded_path=located.path.decoded,
                headers=headers,
                details=details,
                key=l402_key(admission.token),
                token=admission.token,
                quotas=services.quotas,
                leases=services.leases,
                meters=services.meters,
            )
        except L402Error as exc:
            raise await self._refuse(located, client, exc, headers, details) from None
        series.paid_requests.inc()
        services.usage.add(runtime.name)
        return Sale(
            runtime,
            series,
            hold=hold,
            token=admission.token,
            authorization=admission.authorization if runtime.route.forward_authorization else None,
            arrived=arrived,
            record=record,
        )

    async def _demand_payment(
        self,
        located: Located,
        client: ClientInfo,
        refused: L402Error | None,
        headers: Iterable[tuple[str, str]],
        details: RequestDetails | None = None,
    ) -> PaymentRequired:
        config = located.table.config
        return await self.services.issuer.demand_payment(
            located.runtime,
            client_key(client.address, config.challenge_rate_limit.ipv6_prefix),
            refused,
            config.invalid_credential_status,
            price_query(located, headers, details),
        )

    async def _refuse(
        self,
        located: Located,
        client: ClientInfo,
        exc: L402Error,
        headers: Iterable[tuple[str, str]],
        details: RequestDetails | None = None,
    ) -> TokenInUse | PaymentRequired:
        name = located.runtime.name
        self._metrics.auth_failures.labels(route=name, reason=exc.reason.value).inc()
        if exc.reason is Reason.IN_USE:
            return TokenInUse()
        required = await self._demand_payment(located, client, exc, headers, details)
        if isinstance(exc, BundleExhausted):  # the 402 for the next bundle says what is left
            required.headers = exc.headers
        return required

    async def _freebie(
        self, located: Located, client: ClientInfo, arrived: float, record: AccessRecord | None
    ) -> Sale | None:
        """A free sale within the route's `freebies`, or None (then the 402)."""
        prefix = located.table.config.challenge_rate_limit.ipv6_prefix
        hold = await self.services.quotas.freebie(
            located.runtime.route, client, located.path.decoded, prefix
        )
        if hold is None:
            return None
        runtime = located.runtime
        sale = Sale(
            runtime,
            self._metrics.route(runtime.name),
            hold=hold,
            token=None,
            authorization=None,
            arrived=arrived,
            record=record,
        )
        sale.outcome("freebie")
        return sale


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
