"""The embedded middleware's steps for one request, whatever framework carries it.

The decision is the proxy's own `Paywall` (gateway.paywall): the same path
normal form, route match, credential check, challenge and single-use lease,
and the same `Sale` after the answer. What differs when embedded:

- a request that no route takes (no match, or a method no route lists) is the
  app's own and goes to it untouched, instead of a 404 / 405 / 501;
- a path that cannot be normalised is still refused (400): the gateway could
  not tell whether the app would route it to a priced handler;
- "forward" is calling the app's handler, and the app is the "upstream" of the
  metrics (`l402_upstream_requests_total`, `..._upstream_latency_seconds`);
- the single-use rule is the proxy's: an answer below 500 consumes the token,
  a 5xx, an exception, no answer, or a client gone before the answer started
  give it back.

No framework imports here: gateway.embed.aiohttp_embed and gateway.embed.asgi
adapt these steps to their request objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.http.clientinfo import ClientInfo
from gateway.paywall.decision import Located, Paywall
from gateway.paywall.holds import AnswerHeaders
from gateway.paywall.refusals import MethodNotAllowed, MethodNotImplemented, NoRoute, NotStarted
from gateway.paywall.requestview import RequestDetails
from gateway.paywall.sale import Sale


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


def untouched(sale: Sale) -> bool:
    """A free route's request: the app's own, nothing to settle (a freebie is settled)."""
    return sale.token is None and sale.hold is None


def paid_of(sale: Sale) -> Paid | None:
    """The handler's view of a sale (None on a free route)."""
    token = sale.token
    if token is None:
        return None
    route = sale.runtime.route
    return Paid(route.name, token.token_id_hex, token.valid_until, route.single_use)


class Gate:
    """`locate` -> `admit` -> the app -> `answered` (or `failed`)."""

    def __init__(self, paywall: Paywall) -> None:
        self.paywall = paywall

    def locate(self, host: str, raw_path: str, method: str) -> Located | None:
        """The route this request is for; None when it is the app's own.

        Raises BadRequestPath (400) for a path without a normal form.
        """
        try:
            return self.paywall.locate(host, raw_path, method)
        except (NoRoute, MethodNotAllowed, MethodNotImplemented):
            return None

    async def admit(
        self,
        located: Located,
        headers: Iterable[tuple[str, str]],
        client: ClientInfo,
        details: RequestDetails | None = None,
    ) -> Sale:
        """Decide payment; raises a Refusal (the challenge, 409, 429, 503) to answer with.
        `details`: the request's query and body prefix, for metered routes."""
        arrived = time.perf_counter()
        if located.runtime.mint is not None and not self.paywall.running:
            raise NotStarted()
        return await self.paywall.admit(located, headers, client, arrived=arrived, details=details)

    @staticmethod
    async def answered(
        sale: Sale, status: int, *, client_gone: bool = False, headers: AnswerHeaders = ()
    ) -> None:
        """The app answered `status` (not sent yet, where the framework allows holding it).

        A client already gone was not served: the token is given back. Raises
        LeaseLost when this request's lease lapsed and another request holds the
        token now (the caller answers 409 instead, as the proxy does, if it can).
        """
        await sale.answered(status, served=False if client_gone else None, headers=headers)

    @staticmethod
    async def failed(sale: Sale) -> None:
        """The app raised, or returned without answering: no answer, so the token is kept."""
        await sale.failed("error")
