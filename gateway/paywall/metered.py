"""Metered holds: what a paid request on a `bundle:` route holds, and how its answer settles it.

`BundleMeter.hold` turns (route, credential key, request) into a `MeteredHold`:

1. estimate the request (`max_tokens` from a bounded body prefix where the
   terms say so, else the route's estimate) and reserve it on the
   credential's balance (gateway.paywall.meter, atomic in the store);
2. a balance the store does not know yet is a paid bundle never used:
   credit it once for its payment (idempotent per payment hash), then
   reserve again;
3. a balance that cannot cover the reservation raises `BundleExhausted`, an
   `L402Error`, so the decision answers it like any refused credential: a
   fresh 402 for the next bundle, carrying `L402-Balance` with what is left.

The hold then puts `L402-Balance` on the answer, keeps the answer's bounded
tail as it streams past (`feed`, never delaying or buffering it), keeps its
reservation alive while a long answer still flows, and debits what the
answer used once its body has gone by (`finished`), also when the client
left mid-stream (the reservation) or the answer had no usage (the estimate).
No answer at all gives the reservation back. A WebSocket upgrade (101) is one
answer with no body: settled at once (`requests`: 1, tokens: the estimate).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.model import Route
from gateway.l402.errors import L402Error, Reason
from gateway.metering.balanceheader import BALANCE_HEADER
from gateway.metering.estimate import ESTIMATE_BODY_LIMIT
from gateway.metering.terms import BundleTerms
from gateway.observability.metrics import GatewayMetrics, MeterSeries
from gateway.paywall.allotments import Allotments
from gateway.paywall.credentialkeys import CredentialKey
from gateway.paywall.holds import AnswerHeaders, BodyWatch, Headers, Send, Settled
from gateway.paywall.meter import Admission, AllotmentLedger, Exhausted, Meter
from gateway.paywall.refusals import StoreUnavailable
from gateway.pricer.requestview import RequestView
from gateway.store.roles import Balances
from gateway.store.types import BalanceMismatch, HoldStatus, StoreError

log = logging.getLogger("gateway.meter")

SWITCHING_PROTOCOLS = 101


class BundleExhausted(L402Error):
    """The credential's balance cannot pay for this request: the 402 sells the next bundle.

    `headers` go on that 402 (`L402-Balance: <left>;unit=...`)."""

    def __init__(self, detail: str, headers: Headers = ()) -> None:
        super().__init__(Reason.EXHAUSTED, detail)
        self.headers = tuple(headers)


def hold_ttl(route: Route) -> int:
    """How long a reservation lives without news: the body upload and the first answer bytes
    within their deadlines, then a minute; a flowing answer keeps extending it."""
    return int(route.request_body_timeout_seconds + route.upstream_timeout_seconds) + 60


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str | None
    content_encoding: str | None
    usage_values: tuple[str, ...]


def _answer(status: int, headers: AnswerHeaders, terms: BundleTerms) -> _Answer:
    content_type = content_encoding = None
    values: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value
        elif lowered == "content-encoding":
            content_encoding = value
        elif terms.usage_header is not None and lowered == terms.usage_header:
            values.append(value)
    return _Answer(status, content_type, content_encoding, tuple(values))


class MeteredHold:
    """A reservation on the gateway's own balance (gateway.paywall.holds.Hold)."""

    def __init__(
        self,
        meter: Meter,
        admission: Admission,
        series: MeterSeries,
        clock: Callable[[], float],
    ) -> None:
        self._meter = meter
        self.admission = admission
        self._series = series
        self._clock = clock
        self._answer: _Answer | None = None
        self._renew_at = clock() + meter.hold_ttl / 2
        self._renewing: asyncio.Task[bool] | None = None
        self._done = False

    # -- Hold ------------------------------------------------------------------------
    @property
    def watch(self) -> BodyWatch:
        return self

    async def answered(self, status: int, served: bool, headers: AnswerHeaders = ()) -> Settled:
        self._answer = _answer(status, headers, self.admission.terms)
        settled = Settled(headers=((BALANCE_HEADER, self.admission.header),))
        if status == SWITCHING_PROTOCOLS:  # no body will follow: settle on the upgrade now
            note = await self.finished(True)
            return Settled(settled.headers, note)
        return settled

    async def finished(self, complete: bool) -> str | None:
        if self._done:
            return None
        self._done = True
        answer = self._answer
        try:
            outcome = await self._meter.settle(
                self.admission,
                status=answer.status if answer is not None else None,
                complete=complete,
                content_type=answer.content_type if answer is not None else None,
                content_encoding=answer.content_encoding if answer is not None else None,
                header_values=answer.usage_values if answer is not None else (),
            )
        except StoreError as exc:
            log.warning(
                "metered answer not settled; its reservation lapses",
                extra={"route": self._series.route, "error": str(exc)},
            )
            return "metered settle failed; the reservation lapses"
        charge, settlement = outcome.charge, outcome.settlement
        unit = self.admission.terms.unit
        self._series.settled.inc()
        self._series.settlement(charge.basis.value, charge.problem)
        self._series.served(unit, settlement.debited, settlement.shortfall)
        return None if charge.problem is None else f"usage {charge.problem.value}"

    async def release(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._meter.release(self.admission)
        except StoreError as exc:  # it expires by itself
            log.warning(
                "reservation not given back; it lapses",
                extra={"route": self._series.route, "error": str(exc)},
            )
            return
        self._series.given_back.inc()

    # -- BodyWatch -------------------------------------------------------------------
    @property
    def keeps_length(self) -> bool:
        return True  # reads the answer, never changes it

    @property
    def ended(self) -> bool:
        return False  # a bundle never cuts an answer short: it may overdraw by one answer

    async def feed(self, chunk: bytes, send: Send) -> None:
        self.admission.observer.feed(chunk)
        if self._renewing is None and self._clock() >= self._renew_at:
            self._renewing = asyncio.ensure_future(self._renew())
        await send(chunk)

    async def drain(self, send: Send) -> None:
        """Nothing is held back: every chunk went on as it came."""

    async def _renew(self) -> bool:
        """Keep a long answer's reservation (off the relay's path: never delays a chunk)."""
        try:
            kept = await self._meter.extend(self.admission)
        except StoreError:
            kept = False
        self._renew_at = self._clock() + self._meter.hold_ttl / 2
        self._renewing = None
        return kept


class BundleMeter:
    """The embedded meter (`bundle:` routes): balances in the gateway's own store."""

    def __init__(
        self,
        balances: Balances,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
        allotments: Allotments | None = None,
    ) -> None:
        """`allotments` None: a store transaction per reservation (StoreLedger)."""
        self._balances = balances
        self._metrics = metrics
        self._clock = clock
        self._ledger = AllotmentLedger(allotments) if allotments is not None else None

    async def hold(self, route: Route, key: CredentialKey, view: RequestView) -> MeteredHold:
        """Reserve this request's estimate; raises BundleExhausted or StoreUnavailable."""
        terms = route.bundle
        assert terms is not None, "only bundle routes are metered here"
        body: bytes | None = None
        complete = True
        if terms.estimate_from_body:
            body, complete = await view.body_prefix(ESTIMATE_BODY_LIMIT + 1)
        series = self._metrics.meter(route.name)
        meter = Meter(
            self._balances, hold_ttl=hold_ttl(route), clock=self._clock, ledger=self._ledger
        )
        try:
            admitted = await meter.admit(
                terms, key.balance_id, route.name, body, body_complete=complete
            )
            if isinstance(admitted, Exhausted) and admitted.status is HoldStatus.UNKNOWN:
                credit = await meter.credit(terms, key.balance_id, key.payment_id, route.name)
                if credit.credited:
                    series.sold(terms.unit, terms.units)
                admitted = await meter.admit(
                    terms, key.balance_id, route.name, body, body_complete=complete
                )
        except BalanceMismatch:
            raise self._mismatch(route) from None
        except StoreError as exc:
            raise StoreUnavailable(f"balance store unavailable: {exc}") from exc
        if isinstance(admitted, Exhausted):
            if admitted.status is HoldStatus.MISMATCH:
                raise self._mismatch(route)
            series.exhausted.inc()
            raise BundleExhausted(
                "this bundle is used up: pay the new invoice for the next one",
                ((BALANCE_HEADER, admitted.header),),
            )
        return MeteredHold(meter, admitted, series, self._clock)

    @staticmethod
    def _mismatch(route: Route) -> BundleExhausted:
        log.warning(
            "a balance is in another unit or for another route than its route's bundle now; "
            "the buyer is asked to buy a new bundle",
            extra={"route": route.name},
        )
        return BundleExhausted(
            "this credential's balance is not in this route's units (the bundle terms "
            "changed): pay the new invoice for a bundle on the current terms"
        )
