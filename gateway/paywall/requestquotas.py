"""A route's `rate_limits` and `freebies` on the request path (Aperture's `ratelimits`, freebies).

- Rate limits apply to paid requests (subject: the credential, `token:<id>`),
  to freebies and to free routes (subject: the client, `ip:<client key>`);
  every matching rule or none takes a token, and a refused request is 429 +
  Retry-After before anything is reserved or forwarded. Unpaid requests on a
  priced route get their 402 unlimited here (the challenge limiter bounds
  those). Shared in the store on PostgreSQL, per process on SQLite
  (gateway.paywall.quotas, which degrades to per-process buckets when the
  store fails, never to none).
- Freebies: an unpaid request on a priced route with allowance left is
  forwarded free (`FreebieHold`), counted per client per period in the
  store (one atomic UPSERT, shared by processes and replicas); the freebie is
  given back when the upstream did not serve it (no answer, or 5xx). A store
  that cannot count grants none: the buyer gets the 402.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.model import Route
from gateway.http.clientinfo import ClientInfo
from gateway.metering.limits import client_subject, retry_after
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.holds import NOTHING, AnswerHeaders, BodyWatch, Settled
from gateway.paywall.quotas import FreebieCounter, FreebieGrant, RequestLimiter
from gateway.paywall.ratelimit import client_key
from gateway.paywall.refusals import RequestRateLimited


def unpaid_subject(client: ClientInfo, ipv6_prefix: int) -> str:
    """The rate-limit subject of a request without a credential: its client (`ip:...`)."""
    return client_subject(client_key(client.address, ipv6_prefix))


class FreebieHold:
    """A free request within the client's allowance: given back when it was not served."""

    __slots__ = ("_counter", "_done", "grant")

    watch: BodyWatch | None = None

    def __init__(self, counter: FreebieCounter, grant: FreebieGrant) -> None:
        self._counter = counter
        self.grant = grant
        self._done = False

    async def answered(self, status: int, served: bool, headers: AnswerHeaders = ()) -> Settled:
        if not served:
            await self.release()
        self._done = True
        return NOTHING

    async def finished(self, complete: bool) -> str | None:
        return None

    async def release(self) -> None:
        if not self._done:
            self._done = True
            await self._counter.give_back(self.grant)


class RequestQuotas:
    def __init__(
        self,
        limiter: RequestLimiter,
        freebies: FreebieCounter,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.limiter = limiter
        self._freebies = freebies
        self._metrics = metrics
        self._clock = clock

    async def limit(self, route: Route, path: str, subject: str) -> None:
        """Take a token from every matching rule; raises RequestRateLimited (429) if any is dry."""
        if not route.rate_limits:
            return
        wait = await self.limiter.check(route.name, route.rate_limits, path, subject, self._clock())
        if wait is not None:
            self._metrics.requests_rate_limited.labels(route=route.name).inc()
            raise RequestRateLimited(retry_after(wait))

    async def freebie(
        self, route: Route, client: ClientInfo, path: str, ipv6_prefix: int
    ) -> FreebieHold | None:
        """A freebie for this unpaid request, or None (none left, or the store could not count).

        Rate limits apply to freebies too (by client): a limited one is given back, 429."""
        policy = route.freebies
        if policy is None:
            return None
        grant = await self._freebies.take(route.name, policy, client.address, self._clock())
        if grant is None:
            return None
        hold = FreebieHold(self._freebies, grant)
        try:
            await self.limit(route, path, unpaid_subject(client, ipv6_prefix))
        except RequestRateLimited:
            await hold.release()
            raise
        self._metrics.freebies.labels(route=route.name).inc()
        return hold
