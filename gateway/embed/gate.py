"""The embedded middleware's steps for one request, whatever framework carries it.

The decision is the proxy's own `Paywall` (gateway.paywall.decision): the same
path normal form, route match, credential check, challenge and single-use
lease. What differs when embedded:

- a request that no route takes (no match, or a method no route lists) is the
  app's own and goes to it untouched, instead of a 404 / 405 / 501;
- a path that cannot be normalised is still refused (400): the gateway could
  not tell whether the app would route it to a priced handler;
- "forward" is calling the app's handler, and the app is the "upstream" of the
  metrics (`l402_upstream_requests_total`, `..._upstream_latency_seconds`);
- the single-use rule is the proxy's: an answer below 500 consumes the token,
  a 5xx, an exception, no answer, or a client gone before the answer started
  give it back (`LeaseKeeper.settle` / `release`).

No framework imports here: gateway.embed.aiohttp_embed and gateway.embed.asgi
adapt these steps to their request objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.http.clientinfo import ClientInfo
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.decision import Admitted, Located, Paywall
from gateway.server.errors import (
    RETRY_AFTER_SECONDS,
    GatewayError,
    MethodNotAllowed,
    MethodNotImplemented,
    NoRoute,
)


class NotStarted(GatewayError):
    """A priced request arrived before start-up (or after shutdown): nothing can be sold."""

    status = 503
    reason = "not_started"

    def __init__(self) -> None:
        super().__init__(
            "the payment middleware is not running; retry later", retry_after=RETRY_AFTER_SECONDS
        )


@dataclass(frozen=True, slots=True)
class Paid:
    """What the app's handler may know about the payment that admitted its request.

    Secret-free: the token id is what `l402-gateway revoke` takes, never the
    macaroon or the preimage.
    """

    route: str
    token_id: str  # hex of the identifier's token id
    valid_until: int | None  # unix seconds; None = never expires
    single_use: bool


@dataclass(frozen=True, slots=True)
class Sale:
    """One admitted request on its way through the app (`paid` None on a free route)."""

    located: Located
    admitted: Admitted
    arrived: float  # perf_counter() when the request reached the middleware
    handed_over: float  # perf_counter() when the app's handler was called

    @property
    def paid(self) -> Paid | None:
        token = self.admitted.token
        if token is None:
            return None
        route = self.located.runtime.route
        return Paid(route.name, token.token_id_hex, token.valid_until, route.single_use)


class Gate:
    """`locate` -> `admit` -> the app -> `answered` (or `failed`)."""

    def __init__(self, paywall: Paywall, metrics: GatewayMetrics) -> None:
        self.paywall = paywall
        self._metrics = metrics
        self.running = False  # set by the lifecycle (gateway.embed.l402) once services exist

    def locate(self, host: str, raw_path: str, method: str) -> Located | None:
        """The route this request is for; None when it is the app's own.

        Raises BadRequestPath (400) for a path without a normal form.
        """
        try:
            return self.paywall.locate(host, raw_path, method)
        except (NoRoute, MethodNotAllowed, MethodNotImplemented):
            return None

    async def admit(
        self, located: Located, headers: Iterable[tuple[str, str]], client: ClientInfo
    ) -> Sale:
        """Decide payment; raises a Refusal (the challenge, 409, 429, 503) to answer with."""
        arrived = time.perf_counter()
        if located.runtime.mint is not None and not self.running:
            raise NotStarted()
        admitted = await self.paywall.admit(located, headers, client)
        return Sale(located, admitted, arrived, time.perf_counter())

    async def answered(self, sale: Sale, status: int, *, client_gone: bool = False) -> None:
        """The app answered `status` (not sent yet, where the framework allows holding it).

        Counts the answer, then settles a single-use lease; raises LeaseLost when
        this request's lease lapsed and another request holds the token now (the
        caller answers 409 instead, as the proxy does, if it still can).
        """
        now = time.perf_counter()
        series = self._metrics.route(sale.located.runtime.name)
        series.upstream_latency.observe(now - sale.handed_over)
        series.upstream_requests(f"{status // 100}xx").inc()
        lease = sale.admitted.lease
        if lease is not None:
            if client_gone:
                await self._release(sale)
            else:
                await self.paywall.services.leases.settle(lease, status)
        ours = (sale.handed_over - sale.arrived) + (time.perf_counter() - now)
        series.added_latency.observe(ours)

    async def failed(self, sale: Sale) -> None:
        """The app raised, or returned without answering: no answer, so the token is kept."""
        self._metrics.route(sale.located.runtime.name).upstream_requests("error").inc()
        await self._release(sale)

    async def _release(self, sale: Sale) -> None:
        lease = sale.admitted.lease
        if lease is not None:
            await self.paywall.services.leases.release(lease)
