"""A `Sale`: one admitted request from the paywall's yes to the end of its answer.

Every transport forwards differently (HTTP/1.1 through the pooled proxy,
WebSocket sessions, HTTP/2 streams, an embedding app's own handler), but what
happens after the decision is one rule, kept here:

- `answered(status)`: the upstream (or the app) answered. The answer's
  latency and status class are counted; a single-use token is consumed when
  the answer was served (below 500, or as the transport says) and given back
  otherwise; the time the gateway itself added is observed. Raises
  `LeaseLost` when this request's lease lapsed and another request holds the
  token now: it must not be answered as paid.
- `failed(failure)`: the upstream failed before answering (`timeout`,
  `error`, or None for the client's own fault, e.g. a body too large): the
  failure is counted and the token given back.
- `client_left()`: the client went away before the answer started: the
  token is given back (nothing was delivered).

A sale settles once: whichever of the three comes first decides, the others
do nothing, so cleanup paths may call them freely. What the sale learns goes
into the request's `AccessRecord`.
"""

from __future__ import annotations

import time

from gateway.l402.verify import VerifiedToken
from gateway.observability.metrics import RouteSeries
from gateway.paywall.access import AccessRecord
from gateway.paywall.leases import Lease, LeaseKeeper
from gateway.paywall.routes import RouteRuntime


class Sale:
    __slots__ = (
        "_arrived",
        "_handed_over",
        "_leases",
        "_record",
        "_series",
        "_settled",
        "authorization",
        "lease",
        "runtime",
        "token",
    )

    def __init__(
        self,
        runtime: RouteRuntime,
        series: RouteSeries,
        leases: LeaseKeeper | None,
        *,
        lease: Lease | None,
        token: VerifiedToken | None,
        authorization: str | None,
        arrived: float,
        record: AccessRecord | None = None,
    ) -> None:
        self.runtime = runtime
        self.lease = lease
        if lease is not None and leases is None:
            raise ValueError("a leased sale needs its LeaseKeeper")
        self.token = token  # None on a free route
        self.authorization = authorization  # the one value to forward upstream (None: none)
        self._series = series
        self._leases = leases
        self._record = record
        self._arrived = arrived
        self._handed_over = time.perf_counter()
        self._settled = False
        if record is not None:
            record.outcome = "free" if token is None else "paid"
            record.token_id = self.token_id

    @property
    def token_id(self) -> str | None:
        return None if self.token is None else self.token.token_id_hex

    @property
    def paid(self) -> bool:
        return self.token is not None

    @property
    def settled(self) -> bool:
        return self._settled

    def note(self, error: str) -> None:
        """Something the access line should say about this request (secret-free)."""
        if self._record is not None:
            self._record.error = error

    def outcome(self, outcome: str) -> None:
        if self._record is not None:
            self._record.outcome = outcome

    async def answered(self, status: int, *, served: bool | None = None) -> None:
        """The answer's status is known and not sent yet. `served` (default: status < 500)
        says whether the buyer got what it paid for (gRPC's UNAVAILABLE is not)."""
        if self._settled:
            return
        self._settled = True
        answered_at = time.perf_counter()
        series = self._series
        series.upstream_latency.observe(answered_at - self._handed_over)
        series.upstream_requests(f"{status // 100}xx").inc()
        if self._record is not None:
            self._record.upstream_status = status
        if self.lease is not None and self._leases is not None:
            if served if served is not None else status < 500:
                failure = await self._leases.commit(self.lease)
                if failure is not None:
                    self.note(failure)
            else:
                await self._leases.release(self.lease)
        ours = (self._handed_over - self._arrived) + (time.perf_counter() - answered_at)
        series.added_latency.observe(max(ours, 0.0))

    async def failed(self, failure: str | None, detail: str | None = None) -> None:
        """No answer: `failure` is the status_class label (`timeout`, `error`), None when
        the upstream is not to blame; `detail` goes to the access line."""
        if self._settled:
            return
        self._settled = True
        if failure is not None:
            self._series.upstream_requests(failure).inc()
        if detail is not None:
            self.note(detail)
        if self.lease is not None and self._leases is not None:
            await self._leases.release(self.lease)

    async def client_left(self) -> None:
        """The client went away before the answer started: nothing was delivered."""
        if self._settled:
            return
        self._settled = True
        self.outcome("client_disconnected")
        if self.lease is not None and self._leases is not None:
            await self._leases.release(self.lease)
