"""Metered holds kept by an Aperture pricer (`pricing: {grpc: ..., metered: true}`).

The pricer keeps the balance (meterd, or the operator's own), exactly as
Aperture asks it (docs/metering.md, "The protocol"):

- `AuthorizeRequest` for every paid request, with the request text and the
  credential's id (an L402 token id, a charge credential's payment hash):
  allowed (the pricer reserved `reserved_estimate`), or refused, which is
  answered like an exhausted bundle: a fresh 402 for the next one (priced by
  `GetPrice`; the refusal's own `price_sats` is not used);
- `ReportUsage` once the answer's body has gone by, with its bounded tail,
  status, content type and encoding, whether it reached its end, and the
  echoed reservation; also when no answer was delivered (status 502, no
  tail: the pricer releases the reservation). Reports leave the request's
  path: they are sent in the background and retried 4 times when the pricer
  is unavailable (0.5 s, doubling, as Aperture), then counted as lost
  (`l402_pricer_reports_lost_total`): that debit is gone.

A pricer that cannot be asked fails closed: 503 (`PricerDown`), never an
unmetered answer. The pricer's balance is in its own units and is not told
before the answer, so these answers carry no `L402-Balance`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.config.model import GrpcPricing, Route
from gateway.metering.tail import TailCollector
from gateway.observability.meterseries import MeterSeries
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.credentialkeys import CredentialKey
from gateway.paywall.holds import AnswerHeaders, BodyWatch, Send, Settled
from gateway.paywall.metered import BundleExhausted
from gateway.paywall.refusals import PricerDown
from gateway.pricer.errors import PricerError, PricerUnavailable
from gateway.pricer.requestview import RequestView
from gateway.pricer.types import Authorization, UsageDebit, UsageReport
from gateway.pricer.wire import PricedRequest

log = logging.getLogger("gateway.meter")
TAIL_BYTES = 16 * 1024  # Aperture's default `usagetailbytes`
REPORT_RETRIES = 4
REPORT_BACKOFF = 0.5  # seconds before the first retry, doubling
NO_ANSWER_STATUS = 502
SHUTDOWN_WAIT = 5.0
SAT_UNIT = "sat"


class MeteringPricer(Protocol):
    """What a metered hold asks a pricer (gateway.pricer.client.GrpcPricer)."""

    async def authorize_request(
        self, request: PricedRequest, token_id: str, service_name: str
    ) -> Authorization: ...

    async def report_usage(self, report: UsageReport) -> UsageDebit: ...


@dataclass(slots=True)
class _Seen:
    status: int = NO_ANSWER_STATUS
    content_type: str = ""
    content_encoding: str = ""


class Reporter:
    """Sends usage reports off the request path, retrying a pricer that is down."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    def submit(self, pricer: MeteringPricer, report: UsageReport, route: str) -> None:
        task = asyncio.ensure_future(self._send(pricer, report, route))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, pricer: MeteringPricer, report: UsageReport, route: str) -> None:
        delay = REPORT_BACKOFF
        for attempt in range(REPORT_RETRIES + 1):
            try:
                debit = await pricer.report_usage(report)
            except PricerUnavailable as exc:
                if attempt == REPORT_RETRIES:
                    self._lost(route, exc)
                    return
                await asyncio.sleep(delay)
                delay *= 2
                continue
            except PricerError as exc:  # refused: the same report fails again
                self._lost(route, exc)
                return
            self._metrics.meter(route).served(SAT_UNIT, debit.debited_sats)
            return

    def _lost(self, route: str, exc: PricerError) -> None:
        self._metrics.pricer_reports_lost.labels(route=route).inc()
        log.warning(
            "usage report not taken by the pricer; its debit is lost",
            extra={"route": route, "error": exc.code},
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self, timeout: float = SHUTDOWN_WAIT) -> None:
        """At shutdown: let reports in flight finish (bounded), cancel the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in late:
            task.cancel()


class PricerHold:
    """An authorized request on a pricer-kept bundle (gateway.paywall.holds.Hold)."""

    def __init__(
        self,
        pricer: MeteringPricer,
        reporter: Reporter,
        route: Route,
        path: str,
        token_id: str,
        reserved: int,
    ) -> None:
        self._pricer = pricer
        self._reporter = reporter
        self._route = route
        self._path = path
        self._token_id = token_id
        self.reserved = reserved
        self._tail = TailCollector(TAIL_BYTES)
        self._seen = _Seen()
        self._done = False

    @property
    def watch(self) -> BodyWatch:
        return self

    @property
    def keeps_length(self) -> bool:
        return True  # reads the answer, never changes it

    @property
    def ended(self) -> bool:
        return False

    async def feed(self, chunk: bytes, send: Send) -> None:
        self._tail.feed(chunk)
        await send(chunk)

    async def drain(self, send: Send) -> None:
        """Nothing is held back: every chunk went on as it came."""

    async def answered(self, status: int, served: bool, headers: AnswerHeaders = ()) -> Settled:
        self._seen.status = status
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-type":
                self._seen.content_type = value
            elif lowered == "content-encoding":
                self._seen.content_encoding = value
        if status == 101:  # Aperture: an upgrade only releases the reservation
            self._report(complete=True)
        return Settled()

    async def finished(self, complete: bool) -> str | None:
        self._report(complete)
        return None

    async def release(self) -> None:
        self._seen.status = NO_ANSWER_STATUS
        self._report(complete=False)

    def _report(self, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        report = UsageReport(
            token_id=self._token_id,
            path=self._path,
            service_name=self._route.service,
            http_status=self._seen.status,
            content_type=self._seen.content_type,
            complete=complete,
            response_tail=self._tail.tail(),
            content_encoding=self._seen.content_encoding,
            reserved_estimate=self.reserved,
        )
        self._reporter.submit(self._pricer, report, self._route.name)


PricerOf = Callable[[GrpcPricing], MeteringPricer]


class PricerMeter:
    """Authorizes paid requests on routes whose pricer keeps the bundles."""

    def __init__(self, pricers: PricerOf, metrics: GatewayMetrics, reporter: Reporter) -> None:
        self._pricers = pricers
        self._metrics = metrics
        self.reporter = reporter

    async def hold(self, route: Route, key: CredentialKey, view: RequestView) -> PricerHold:
        pricing = route.pricing
        assert isinstance(pricing, GrpcPricing), "only pricer-metered routes are held here"
        pricer = self._pricers(pricing)
        series: MeterSeries = self._metrics.meter(route.name)
        try:
            answer = await pricer.authorize_request(
                await view.priced(), key.ident_hex, route.service
            )
        except PricerError as exc:
            log.warning(
                "metered pricer did not authorize; request refused",
                extra={"route": route.name, "error": exc.code},
            )
            raise PricerDown("the pricer of this route is unavailable; retry later") from exc
        if not answer.allowed:
            series.exhausted.inc()
            reason = answer.reason or "the bundle is used up"
            raise BundleExhausted(f"{reason}: pay the new invoice for the next bundle")
        return PricerHold(
            pricer, self.reporter, route, view.path, key.ident_hex, answer.reserved_estimate
        )
