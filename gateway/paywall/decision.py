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

from gateway.http.clientinfo import ClientInfo
from gateway.http.pathrules import path_problem
from gateway.http.paths import BadPath, NormalPath, normalize
from gateway.l402.errors import L402Error, Reason
from gateway.observability.metrics import GatewayMetrics, RouteSeries
from gateway.payment.credential import find_credential, is_payment, parse_authorization
from gateway.payment.errors import PaymentAuthError
from gateway.payment.errors import Reason as PaymentReason
from gateway.payment.problems import Problem, problem_for
from gateway.paywall.access import AccessRecord
from gateway.paywall.holds import Hold, LeaseHold
from gateway.paywall.mpp.seller import Admitted as PaymentAdmitted
from gateway.paywall.mpp.seller import PaymentSeller
from gateway.paywall.options import options_answer
from gateway.paywall.ratelimit import client_key
from gateway.paywall.refusals import (
    BadPaymentCredential,
    BadRequestPath,
    MethodNotAllowed,
    MethodNotImplemented,
    NoRoute,
    PaymentRequired,
    TokenInUse,
)
from gateway.paywall.routes import RouteHolder, RouteRuntime, RuntimeRoutes
from gateway.paywall.sale import Sale
from gateway.paywall.services import Services
from gateway.paywall.verifier import credential_headers
from gateway.pricer.prices import PriceQuery, hook_headers

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
        """Normalise and match; raises BadRequestPath (400, also for a spelling the route
        refuses: gateway.http.pathrules), OptionsAnswered (204: an OPTIONS on a priced
        resource, gateway.paywall.options), NoRoute, MethodNotAllowed (405) or
        MethodNotImplemented (501)."""
        table = self.routes.current
        try:
            path = normalize(raw_path)
        except BadPath as exc:
            raise BadRequestPath(exc.reason) from None
        if method.upper() == "OPTIONS":
            answered = options_answer(table, host, path.decoded)
            if answered is not None:
                raise answered
        runtime = table.match(host, path.decoded, method)
        if runtime is None:
            raise no_match(table, host, path.decoded, method)
        problem = path_problem(runtime.route, path)
        if problem is not None:
            raise BadRequestPath(problem)
        return Located(table, runtime, path, method)

    async def admit(
        self,
        located: Located,
        headers: Iterable[tuple[str, str]],
        client: ClientInfo,
        record: AccessRecord | None = None,
        *,
        arrived: float | None = None,
    ) -> Sale:
        """Decide payment for a located request; raises a Refusal (PaymentRequired, TokenInUse,
        ChallengeRateLimited, LightningUnavailable, StoreUnavailable), after counting it.

        `arrived` (perf_counter) is when the request reached the gateway: the time the
        gateway adds is counted from it (default: the record's start, else now)."""
        if arrived is None:
            arrived = record.started if record is not None else time.perf_counter()
        if record is not None:
            record.route = located.runtime.name
            record.path = located.path.raw
        runtime = located.runtime
        series = self._metrics.route(runtime.name)
        if runtime.mint is None:  # free: sold even before start-up (no lease, no store)
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
        headers = list(headers)  # read more than once: each scheme's credentials, the hook's
        if runtime.route.sells_payment and services.payment is not None:
            payment = await self._payment(located, client, headers, services.payment)
            if payment is not None:
                return self._sold(located, series, payment, arrived, record)
        if not runtime.route.sells_l402:
            raise await self._demand_payment(located, client, None, headers)
        try:
            admission = await services.auth.admit(credential_headers(headers), runtime.route)
            if admission is None:
                raise await self._demand_payment(located, client, None, headers)
            hold: Hold | None = None
            if runtime.route.single_use:
                lease = await services.leases.take(admission.token, runtime.route)
                hold = LeaseHold(services.leases, lease)
        except L402Error as exc:
            raise await self._refuse(located, client, exc, headers) from None
        series.paid_requests.inc()
        services.usage.add(runtime.name)
        self._metrics.scheme_paid_requests.labels(route=runtime.name, scheme="l402").inc()
        return Sale(
            runtime,
            series,
            hold=hold,
            token=admission.token,
            authorization=admission.authorization if runtime.route.forward_authorization else None,
            arrived=arrived,
            record=record,
        )

    async def _payment(
        self,
        located: Located,
        client: ClientInfo,
        headers: list[tuple[str, str]],
        seller: PaymentSeller,
    ) -> tuple[PaymentAdmitted, str] | None:
        """A Payment credential's admission and the Authorization value it came in; None
        when the request carries none (L402 may still buy it). Raises the refusals."""
        values = [value for name, value in headers if name.lower() == "authorization"]
        try:
            credential = find_credential(values)
            if credential is None:
                return None
            admitted = await seller.admit(located.runtime, credential)
        except PaymentAuthError as exc:
            intent = None if exc.reason is PaymentReason.MULTIPLE_CREDENTIALS else _intent(values)
            problem = problem_for(exc, method="lightning", intent=intent, challenge_id=None)
            name = located.runtime.name
            self._metrics.auth_failures.labels(route=name, reason=exc.reason.value).inc()
            if exc.reason in (PaymentReason.MULTIPLE_CREDENTIALS, PaymentReason.METHOD_UNSUPPORTED):
                raise BadPaymentCredential(problem) from None
            raise await self._demand_payment(located, client, None, headers, problem) from None
        used = next(v for v in values if is_payment(v))
        return admitted, used

    def _sold(
        self,
        located: Located,
        series: RouteSeries,
        payment: tuple[PaymentAdmitted, str],
        arrived: float,
        record: AccessRecord | None,
    ) -> Sale:
        admitted, authorization = payment
        runtime = located.runtime
        series.paid_requests.inc()
        self.services.usage.add(runtime.name)
        self._metrics.scheme_paid_requests.labels(route=runtime.name, scheme=admitted.scheme).inc()
        return Sale(
            runtime,
            series,
            hold=admitted.hold,
            token=None,
            authorization=authorization if runtime.route.forward_authorization else None,
            arrived=arrived,
            record=record,
            credential_id=admitted.credential_id,
            scheme=admitted.scheme,
        )

    async def _demand_payment(
        self,
        located: Located,
        client: ClientInfo,
        refused: L402Error | None,
        headers: Iterable[tuple[str, str]],
        problem: Problem | None = None,
    ) -> PaymentRequired:
        config = located.table.config
        return await self.services.issuer.demand_payment(
            located.runtime,
            client_key(client.address, config.challenge_rate_limit.ipv6_prefix),
            refused,
            config.invalid_credential_status,
            price_query(located, headers),
            problem,
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


def _intent(values: list[str]) -> str | None:
    """The intent a refused Payment credential claimed, for its problem type (None: unreadable)."""
    for value in values:
        if is_payment(value):
            try:
                return parse_authorization(value).challenge.intent
            except PaymentAuthError:
                return None
    return None


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
