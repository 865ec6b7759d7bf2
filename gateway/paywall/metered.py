"""Metered holds: what a paid request on a `bundle:` route holds, and how its answer settles it.

`BundleMeter.hold` turns (route, credential key, request) into a `MeteredHold`:

1. estimate the request (`max_tokens` from a bounded body prefix where the
   terms say so, else the route's estimate) and reserve it on this process's
   allotment of the credential's balance (gateway.paywall.allotments: in
   memory, the store is reached only when the allotment rolls);
2. a balance the store does not know yet is a paid bundle never used:
   credit it once for its payment (idempotent per payment hash), then
   reserve again;
3. a balance that cannot cover the reservation raises `BundleExhausted`, an
   `L402Error`, so the decision answers it like any refused credential: a
   fresh 402 for the next bundle, carrying `L402-Balance` with what is left.

The hold then puts `L402-Balance` on the answer, keeps the answer's bounded
tail as it streams past (`feed`, never delaying or buffering it), and debits
what the answer used once its body has gone by (`finished`), also when the client
left mid-stream (the reservation) or the answer had no usage (the estimate).
No answer at all gives the reservation back. A WebSocket upgrade (101) is one
answer with no body: settled at once (`requests`: 1, tokens: the estimate).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.config.model import Route
from gateway.l402.errors import L402Error, Reason
from gateway.metering.balanceheader import BALANCE_HEADER, format_balance
from gateway.metering.charge import decide_charge, read_usage
from gateway.metering.estimate import ESTIMATE_BODY_LIMIT, Estimate, estimate_request
from gateway.metering.tail import TailCollector
from gateway.metering.terms import BundleTerms
from gateway.observability.meterseries import MeterSeries
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.allotments import Allotments
from gateway.paywall.credentialkeys import CredentialKey
from gateway.paywall.holds import AnswerHeaders, BodyWatch, Headers, Send, Settled
from gateway.paywall.meter import minimum_for
from gateway.paywall.refusals import StoreUnavailable
from gateway.pricer.requestview import NO_DETAILS_PREFIX, RequestDetails
from gateway.store.roles import Balances
from gateway.store.types import BalanceMismatch, HoldStatus, StoreError
from gateway.store.types import Hold as StoreHold

log = logging.getLogger("gateway.meter")

SWITCHING_PROTOCOLS = 101


class BundleExhausted(L402Error):
    """The credential's balance cannot pay for this request: the 402 sells the next bundle.

    `headers` go on that 402 (`L402-Balance: <left>;unit=...`)."""

    def __init__(self, detail: str, headers: Headers = ()) -> None:
        super().__init__(Reason.EXHAUSTED, detail)
        self.headers = tuple(headers)


class MeteredHold:
    """A reservation on this process's allotment of the buyer's balance
    (gateway.paywall.holds.Hold, and its own BodyWatch).

    One object from admission to settlement: the allotment is per process and in memory
    (gateway.paywall.allotments), so settling is a synchronous call, and the request
    carries no meter, ledger or observer of its own. Nothing here needs renewing while a
    long answer flows: the allotment's store reservation is kept alive by its rolls, which
    keep every hold in flight."""

    __slots__ = (
        "_allotments",
        "_body_bytes",
        "_content_encoding",
        "_content_type",
        "_done",
        "_series",
        "_status",
        "_tail",
        "_usage_values",
        "available",
        "balance_id",
        "estimate",
        "hold_id",
        "reserved",
        "terms",
    )

    def __init__(
        self,
        allotments: Allotments,
        terms: BundleTerms,
        balance_id: bytes,
        hold: StoreHold,
        estimate: Estimate,
        series: MeterSeries,
    ) -> None:
        assert hold.hold_id is not None
        self._allotments = allotments
        self.terms = terms
        self.balance_id = balance_id
        self.hold_id = hold.hold_id
        self.reserved = hold.amount
        self.available = hold.available  # for other requests, once this one's is held
        self.estimate = estimate
        self._series = series
        self._tail = TailCollector(terms.tail_bytes) if terms.reads_tail else None
        self._body_bytes = 0  # counted here only without a tail (the tail counts its own)
        self._status: int | None = None
        self._content_type: str | None = None
        self._content_encoding: str | None = None
        self._usage_values: tuple[str, ...] = ()
        self._done = False

    @property
    def header(self) -> str:
        """The `L402-Balance` value for the answer."""
        return format_balance(self.available, self.terms.unit, self.reserved)

    # -- Hold ------------------------------------------------------------------------
    @property
    def watch(self) -> BodyWatch:
        return self

    async def answered(self, status: int, served: bool, headers: AnswerHeaders = ()) -> Settled:
        self._status = status
        usage_header = self.terms.usage_header
        values: list[str] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-type":
                self._content_type = value
            elif lowered == "content-encoding":
                self._content_encoding = value
            elif usage_header is not None and lowered == usage_header:
                values.append(value)
        if values:
            self._usage_values = tuple(values)
        balance = ((BALANCE_HEADER, self.header),)
        if status == SWITCHING_PROTOCOLS:  # no body will follow: settle on the upgrade now
            return Settled(balance, self._settle(True))
        return Settled(balance)

    async def finished(self, complete: bool) -> str | None:
        return self._settle(complete)

    def _settle(self, complete: bool) -> str | None:
        """Debit what the answer cost (docs/metering.md, "Settling"), once."""
        if self._done:
            return None
        self._done = True
        terms, tail = self.terms, self._tail
        reading = read_usage(
            terms,
            tail=tail,
            content_type=self._content_type,
            content_encoding=self._content_encoding,
            header_values=self._usage_values,
        )
        charge = decide_charge(
            terms,
            reading,
            status=self._status,
            complete=complete,
            body_bytes=tail.seen if tail is not None else self._body_bytes,
            reserved=self.reserved,
            estimate=self.estimate.units,
        )
        settlement = self._allotments.settle(self.balance_id, self.hold_id, charge.units)
        series = self._series
        series.settled.inc()
        series.settlement(charge.basis.value, charge.problem)
        series.served(terms.unit, settlement.debited, settlement.shortfall)
        return None if charge.problem is None else f"usage {charge.problem.value}"

    async def release(self) -> None:
        if self._done:
            return
        self._done = True
        self._allotments.release(self.balance_id, self.hold_id)
        self._series.given_back.inc()

    # -- BodyWatch -------------------------------------------------------------------
    @property
    def keeps_length(self) -> bool:
        return True  # reads the answer, never changes it

    @property
    def ended(self) -> bool:
        return False  # a bundle never cuts an answer short: it may overdraw by one answer

    async def feed(self, chunk: bytes, send: Send) -> None:
        if self._tail is not None:
            self._tail.feed(chunk)
        else:
            self._body_bytes += len(chunk)
        await send(chunk)

    async def drain(self, send: Send) -> None:
        """Nothing is held back: every chunk went on as it came."""


class BundleMeter:
    """The embedded meter (`bundle:` routes): balances in the gateway's own store, held
    and settled per process through its allotments."""

    def __init__(
        self,
        balances: Balances,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
        allotments: Allotments,
    ) -> None:
        self._balances = balances
        self._metrics = metrics
        self._clock = clock
        self._allotments = allotments

    async def hold(
        self, route: Route, key: CredentialKey, details: RequestDetails | None
    ) -> MeteredHold:
        """Reserve this request's estimate; raises BundleExhausted or StoreUnavailable."""
        terms = route.bundle
        assert terms is not None, "only bundle routes are metered here"
        body: bytes | None = None
        complete = True
        if terms.estimate_from_body:
            body, complete = (
                await details.prefix(ESTIMATE_BODY_LIMIT + 1)
                if details is not None
                else NO_DETAILS_PREFIX
            )
        estimate = estimate_request(terms, body, complete=complete)
        series = self._metrics.meter(route.name)
        balance_id = key.balance_id
        held = self._allotments.hold_now(balance_id, estimate.units, terms.unit, route.name)
        if held is None:
            held = await self._reserve(route, terms, key, estimate, series)
        return MeteredHold(self._allotments, terms, balance_id, held, estimate, series)

    async def _reserve(
        self,
        route: Route,
        terms: BundleTerms,
        key: CredentialKey,
        estimate: Estimate,
        series: MeterSeries,
    ) -> StoreHold:
        """The allotment must roll, wait or refuse: a balance the store does not know yet
        is credited for its payment (idempotent per payment hash), then reserved again."""
        scope, minimum = route.name, minimum_for(terms, estimate.units)
        allotments = self._allotments
        try:
            held = await allotments.reserve(
                key.balance_id, estimate.units, unit=terms.unit, scope=scope, minimum=minimum
            )
            if held.status is HoldStatus.UNKNOWN:
                credit = await self._balances.credit_units(
                    key.balance_id,
                    key.payment_id,
                    terms.units,
                    unit=terms.unit,
                    scope=scope,
                    now=int(self._clock()),
                )
                if credit.credited:
                    series.sold(terms.unit, terms.units)
                held = await allotments.reserve(
                    key.balance_id, estimate.units, unit=terms.unit, scope=scope, minimum=minimum
                )
        except BalanceMismatch:
            raise self._mismatch(route) from None
        except StoreError as exc:
            raise StoreUnavailable(f"balance store unavailable: {exc}") from exc
        if held.status is HoldStatus.RESERVED and held.hold_id is not None:
            return held
        if held.status is HoldStatus.MISMATCH:
            raise self._mismatch(route)
        series.exhausted.inc()
        raise BundleExhausted(
            "this bundle is used up: pay the new invoice for the next one",
            ((BALANCE_HEADER, format_balance(held.available, terms.unit)),),
        )

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
