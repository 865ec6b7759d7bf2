"""The embedded middleware's steps for one request, whatever framework carries it.

The decision is the proxy's own `Paywall` (gateway.paywall): the same path
normal form, route match, credential check, challenge and single-use lease,
and the same `Sale` after the answer. What differs when embedded:

- a request that no route takes (no match, or a method no route lists) is the
  app's own and goes to it untouched, instead of a 404 / 405 / 501; but HEAD
  is priced as GET, and an OPTIONS (preflight or not) on a priced resource is
  answered here (204), never handed to the app (gateway.paywall.options);
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
from gateway.http.paths import BadPath, normalize
from gateway.paywall.decision import Located, Paywall
from gateway.paywall.options import priced_resource
from gateway.paywall.refusals import (
    BadRequestPath,
    MethodNotAllowed,
    MethodNotImplemented,
    NoRoute,
    NotStarted,
)
from gateway.paywall.routes import RouteRuntime
from gateway.paywall.sale import Sale


@dataclass(frozen=True, slots=True)
class Paid:
    """What the app's handler may know about the payment that admitted its request.

    Secret-free: the token id is what `l402-gateway revoke` takes, never the
    macaroon or the preimage.
    """

    route: str
    token_id: str  # the L402 token id; a Payment charge's payment hash, a session's id (hex)
    valid_until: int | None  # unix seconds; None = never expires
    single_use: bool
    scheme: str = "l402"  # or "charge", "session" (the Payment scheme)


def paid_of(sale: Sale) -> Paid | None:
    """The handler's view of a sale (None on a free route)."""
    if sale.credential_id is None:
        return None
    token = sale.token
    route = sale.runtime.route
    return Paid(
        route.name,
        sale.credential_id,
        None if token is None else token.valid_until,
        route.single_use or sale.scheme == "charge",
        sale.scheme,
    )


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

    def preflight_route(self, host: str, raw_path: str) -> RouteRuntime | None:
        """The priced route a CORS preflight is for (the middleware answers it, with that
        route's CORS policy), or None: a free resource's preflight is the app's own.

        A preflight is an OPTIONS request: passed to an app whose handler takes OPTIONS on
        a priced path, it would be served the paid answer unpaid (gateway.paywall.options).
        Raises BadRequestPath (400) for a path without a normal form.
        """
        try:
            path = normalize(raw_path)
        except BadPath as exc:
            raise BadRequestPath(exc.reason) from None
        return priced_resource(self.paywall.routes.current, host, path.decoded)

    async def admit(
        self, located: Located, headers: Iterable[tuple[str, str]], client: ClientInfo
    ) -> Sale:
        """Decide payment; raises a Refusal (the challenge, 409, 429, 503) to answer with."""
        arrived = time.perf_counter()
        if located.runtime.mint is not None and not self.paywall.running:
            raise NotStarted()
        return await self.paywall.admit(located, headers, client, arrived=arrived)

    @staticmethod
    async def answered(
        sale: Sale, status: int, *, client_gone: bool = False, content_type: str = ""
    ) -> None:
        """The app answered `status` (not sent yet, where the framework allows holding it).

        A client already gone was not served: the token is given back. Raises
        LeaseLost when this request's lease lapsed and another request holds the
        token now (the caller answers 409 instead, as the proxy does, if it can).
        """
        await sale.answered(
            status, served=False if client_gone else None, content_type=content_type
        )

    @staticmethod
    async def failed(sale: Sale) -> None:
        """The app raised, or returned without answering: no answer, so the token is kept."""
        await sale.failed("error")
