"""A `Sale`: one admitted request from the paywall's yes to the end of its answer.

Every transport forwards differently (HTTP/1.1 through the pooled proxy,
WebSocket sessions, HTTP/2 streams, an embedding app's own handler), but what
happens after the decision is one rule, kept here:

- `answered(status)`: the upstream (or the app) answered. The answer's
  latency and status class are counted; the request's `Hold`
  (gateway.paywall.holds: a single-use lease, a metered reservation) is
  settled on whether the buyer was served (below 500, or as the transport
  says); the time the gateway itself added is observed. Raises `LeaseLost`
  when this request's lease lapsed and another request holds the token now:
  it must not be answered as paid. Headers the hold adds to the answer are in
  `answer_headers` afterwards; a hold that watches the body is `watch`.
- `finished(complete)`: the answer's body has gone by; a metered hold debits
  what it used.
- `failed(failure)`: the upstream failed before answering (`timeout`,
  `error`, or None for the client's own fault, e.g. a body too large): the
  failure is counted and the hold given back.
- `client_left()`: the client went away before the answer started: the hold
  is given back (nothing was delivered).

A sale settles once: whichever of `answered`, `failed` and `client_left`
comes first decides, the others do nothing, so cleanup paths may call them
freely. What the sale learns goes into the request's `AccessRecord`.
"""

from __future__ import annotations

import time

from gateway.l402.verify import VerifiedToken
from gateway.observability.localseries import RouteSeries
from gateway.paywall.access import AccessRecord
from gateway.paywall.holds import AnswerHeaders, BodyWatch, Headers, Hold
from gateway.paywall.routes import RouteRuntime


class Sale:
    __slots__ = (
        "_arrived",
        "_finished",
        "_handed_over",
        "_record",
        "_series",
        "_settled",
        "answer_headers",
        "authorization",
        "credential_id",
        "hold",
        "runtime",
        "scheme",
        "token",
    )

    def __init__(
        self,
        runtime: RouteRuntime,
        series: RouteSeries,
        *,
        hold: Hold | None,
        token: VerifiedToken | None,
        authorization: str | None,
        credential_id: str | None = None,
        scheme: str = "l402",
        arrived: float,
        record: AccessRecord | None = None,
    ) -> None:
        self.runtime = runtime
        self.hold = hold
        self.answer_headers: Headers = ()
        self.token = token  # the L402 token; None on a free route or another scheme
        self.scheme = scheme  # l402, charge, session
        # What the access line names the payment by: the token id, a charge's payment
        # hash, a session's id (never a secret); None on a free route.
        self.credential_id = token.token_id_hex if token is not None else credential_id
        self.authorization = authorization  # the one value to forward upstream (None: none)
        self._series = series
        self._record = record
        self._arrived = arrived
        self._handed_over = time.perf_counter()
        self._settled = False
        self._finished = False
        if record is not None:
            record.outcome = "free" if self.credential_id is None else "paid"
            record.token_id = self.credential_id

    @property
    def paid(self) -> bool:
        return self.credential_id is not None

    @property
    def settled(self) -> bool:
        return self._settled

    @property
    def watch(self) -> BodyWatch | None:
        return None if self.hold is None else self.hold.watch

    def note(self, error: str) -> None:
        """Something the access line should say about this request (secret-free)."""
        if self._record is not None:
            self._record.error = error

    def outcome(self, outcome: str) -> None:
        if self._record is not None:
            self._record.outcome = outcome

    async def answered(
        self, status: int, *, served: bool | None = None, headers: AnswerHeaders = ()
    ) -> None:
        """The answer's status is known and not sent yet. `served` (default: status < 500)
        says whether the buyer got what it paid for (gRPC's UNAVAILABLE is not); `headers`
        are the answer's (a metered hold reads its Content-Type and usage header)."""
        if self._settled:
            return
        self._settled = True
        answered_at = time.perf_counter()
        series = self._series
        series.upstream_latency.observe(answered_at - self._handed_over)
        series.upstream_requests(f"{status // 100}xx").inc()
        if self._record is not None:
            self._record.upstream_status = status
        if self.hold is not None:
            settled = await self.hold.answered(
                status, served if served is not None else status < 500, headers
            )
            self.answer_headers = settled.headers
            if settled.note is not None:
                self.note(settled.note)
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
        if self.hold is not None:
            await self.hold.release()

    async def finished(self, complete: bool) -> None:
        """The answer's body has gone by (after `answered`; `complete`: to its end)."""
        if not self._settled or self._finished or self.hold is None:
            return
        self._finished = True
        note = await self.hold.finished(complete)
        if note is not None:
            self.note(note)

    async def client_left(self) -> None:
        """The client went away before the answer started: nothing was delivered."""
        if self._settled:
            return
        self._settled = True
        self.outcome("client_disconnected")
        if self.hold is not None:
            await self.hold.release()
