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

from gateway.http.clientinfo import ClientInfo
from gateway.http.pathrules import path_problem
from gateway.http.paths import BadPath, normalize
from gateway.l402.errors import L402Error, Reason
from gateway.observability.localseries import RouteSeries
from gateway.observability.metrics import GatewayMetrics
from gateway.payment.credential import find_credential, is_payment, parse_authorization
from gateway.payment.errors import PaymentAuthError
from gateway.payment.errors import Reason as PaymentReason
from gateway.payment.problems import Problem, problem_for
from gateway.paywall.access import AccessRecord
from gateway.paywall.credentialkeys import l402_key
from gateway.paywall.holds import Hold
from gateway.paywall.located import Located, no_match, price_query
from gateway.paywall.metered import BundleExhausted
from gateway.paywall.meters import hold_for
from gateway.paywall.mpp.seller import Admitted as PaymentAdmitted
from gateway.paywall.mpp.seller import PaymentSeller
from gateway.paywall.options import options_answer
from gateway.paywall.ratelimit import client_key
from gateway.paywall.refusals import (
    BadPaymentCredential,
    BadRequestPath,
    PaymentRequired,
    Refusal,
    TokenInUse,
)
from gateway.paywall.requestquotas import unpaid_subject
from gateway.paywall.routes import RouteHolder
from gateway.paywall.sale import Sale
from gateway.paywall.services import Services
from gateway.paywall.verifier import credential_headers
from gateway.pricer.requestview import RequestDetails


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
        details: RequestDetails | None = None,
    ) -> Sale:
        """Decide payment for a located request; raises a Refusal (PaymentRequired, TokenInUse,
        ChallengeRateLimited, LightningUnavailable, StoreUnavailable), after counting it.

        `arrived` (perf_counter) is when the request reached the gateway: the time the
        gateway adds is counted from it (default: the record's start, else now).
        `details` (query, body prefix) is read only by routes that need it: metered
        ones and Aperture pricers (gateway.pricer.requestview)."""
        if arrived is None:
            arrived = record.started if record is not None else time.perf_counter()
        try:
            return await self._admit(located, headers, client, record, arrived, details)
        except Shadowed as shadowed:
            return self._shadow(located, shadowed.price_msat, record, arrived)

    def _shadow(
        self, located: Located, price_msat: int, record: AccessRecord | None, arrived: float
    ) -> Sale:
        """Served free, as the dry run asks; the challenge it would have got is counted."""
        name = located.runtime.name
        self._metrics.shadow_challenges.labels(route=name).inc()
        self._metrics.shadow_price_msats.labels(route=name).inc(price_msat)
        sale = self._unpaid_sale(located, None, arrived, record, "shadow")
        sale.note(f"shadow: would have asked {price_msat} msat")
        return sale

    async def _admit(
        self,
        located: Located,
        headers: Iterable[tuple[str, str]],
        client: ClientInfo,
        record: AccessRecord | None,
        arrived: float,
        details: RequestDetails | None,
    ) -> Sale:
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
            return self._unpaid_sale(located, None, arrived, record)
        services = self.services
        route = runtime.route
        headers = list(headers)  # read more than once: each scheme's credentials, the hook's
        if route.sells_payment and services.payment is not None:
            payment = await self._payment(located, client, headers, services.payment, details)
            if payment is not None:
                return self._sold(located, series, payment, arrived, record)
        if not route.sells_l402:
            return await self._unpaid(located, client, headers, details, arrived, record)
        try:
            admission = await services.auth.admit(credential_headers(headers), route)
            if admission is None:
                return await self._unpaid(located, client, headers, details, arrived, record)
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
        details: RequestDetails | None,
    ) -> tuple[PaymentAdmitted, str] | None:
        """A Payment credential's admission and the Authorization value it came in; None
        when the request carries none (L402 may still buy it). Raises the refusals; the
        route's `rate_limits` apply per charge or session, as to L402 tokens."""
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
            raise await self._demand_payment(
                located, client, None, headers, problem, details
            ) from None
        try:
            await self.services.quotas.limit(
                located.runtime.route, located.path.decoded, admitted.key.subject
            )
        except Refusal:
            await admitted.hold.release()  # nothing was served: the charge is not spent
            raise
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
        details: RequestDetails | None = None,
    ) -> PaymentRequired:
        """The 402 to raise; on a shadow route, `Shadowed` instead (nothing minted)."""
        config = located.table.config
        if located.runtime.route.shadow:
            query = price_query(located, headers, details)
            raise Shadowed(await self.services.issuer.quote(located.runtime, query))
        return await self.services.issuer.demand_payment(
            located.runtime,
            client_key(client.address, config.challenge_rate_limit.ipv6_prefix),
            refused,
            config.invalid_credential_status,
            price_query(located, headers, details),
            problem,
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
        required = await self._demand_payment(located, client, exc, headers, details=details)
        if isinstance(exc, BundleExhausted):  # the 402 for the next bundle says what is left
            required.headers = exc.headers
        return required

    async def _unpaid(
        self,
        located: Located,
        client: ClientInfo,
        headers: list[tuple[str, str]],
        details: RequestDetails | None,
        arrived: float,
        record: AccessRecord | None,
    ) -> Sale:
        """No credential: a freebie within the route's allowance, else the 402."""
        if located.runtime.route.freebies is not None:
            free = await self._freebie(located, client, arrived, record)
            if free is not None:
                return free
        raise await self._demand_payment(located, client, None, headers, details=details)

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
        return self._unpaid_sale(located, hold, arrived, record, "freebie")

    def _unpaid_sale(
        self,
        located: Located,
        hold: Hold | None,
        arrived: float,
        record: AccessRecord | None,
        outcome: str | None = None,
    ) -> Sale:
        """A request served without a credential: a free route, a freebie, a dry run."""
        sale = Sale(
            located.runtime,
            self._metrics.route(located.runtime.name),
            hold=hold,
            token=None,
            authorization=None,
            arrived=arrived,
            record=record,
        )
        if outcome is not None:
            sale.outcome(outcome)
        return sale


class Shadowed(Exception):
    """A shadow route would have answered 402 at this price (msat): serve it free."""

    def __init__(self, price_msat: int) -> None:
        super().__init__(price_msat)
        self.price_msat = price_msat


def _intent(values: list[str]) -> str | None:
    """The intent a refused Payment credential claimed, for its problem type (None: unreadable)."""
    for value in values:
        if is_payment(value):
            try:
                return parse_authorization(value).challenge.intent
            except PaymentAuthError:
                return None
    return None
