"""The embedded middleware for aiohttp apps.

Unpaid requests to a priced route are answered by the middleware (402 and
the challenge, or another refusal, rendered by gateway.server.errors exactly
as the proxy renders it) and never reach the handler. Paid requests reach it
with `request[PAID]` set. A single-use token settles on the handler's answer
when that answer starts, as behind the proxy:

- a response the handler returns unsent is settled on its status before
  aiohttp sends it, so a lapsed lease can still become the proxy's 409;
- a response the handler sends itself (a StreamResponse or WebSocketResponse
  it prepares) is settled in `on_response_prepare`, just before its headers
  go out (`L402.setup_aiohttp` installs the hook; with the bare middleware it
  is settled when the handler returns), so a long stream never outlives its
  lease unsettled. aiohttp has set up the connection's writer for that
  response by then, so a lease found lost there cannot become a 409: the
  answer is served and the loss logged (docs/status-codes.md);
- `web.HTTPException`s are answers too (their status); any other exception
  before the answer started, and a client that went away before it (aiohttp
  cancels the handler with `handler_cancellation`, or the transport is closed
  by the time the handler returns), give the token back.
"""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.aioweb.answers import answer_response, render
from gateway.aioweb.caller import client_of
from gateway.aioweb.cors import PREFLIGHT, is_preflight
from gateway.embed.aiohttp_paths import mount_prefix, relative_raw_path
from gateway.embed.gate import Gate, Paid, paid_of
from gateway.paywall.preflight import preflight_answer
from gateway.paywall.refusals import LeaseLost, Refusal
from gateway.paywall.sale import Sale

log = logging.getLogger("gateway.embed")

PAID = web.RequestKey("l402_paid", Paid)


class _Settlement:
    """One paid request's sale, settled once: by the prepare hook or by the middleware."""

    __slots__ = ("gate", "sale", "settled")

    def __init__(self, gate: Gate, sale: Sale) -> None:
        self.gate = gate
        self.sale = sale
        self.settled = False

    async def answered(
        self, status: int, response: web.StreamResponse | None, *, client_gone: bool = False
    ) -> None:
        """Settle on `status`; the sale's own headers (a balance, a receipt) go on
        `response` when its headers are not sent yet."""
        self.settled = True
        # No content type: this middleware cannot watch a body the handler writes itself,
        # so a streamed answer is sold as one answer (one session unit), never per event.
        await self.gate.answered(self.sale, status, client_gone=client_gone)
        if response is not None and not response.prepared:
            for name, value in self.sale.answer_headers:
                response.headers[name] = value


SETTLEMENT = web.RequestKey("l402_settlement", _Settlement)


async def settle_on_prepare(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: settle a response the handler sends itself as it starts."""
    settlement = request.get(SETTLEMENT)
    if settlement is not None and not settlement.settled:
        with contextlib.suppress(LeaseLost):  # too late to replace; LeaseKeeper logged it
            await settlement.answered(response.status, response)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def middleware(gate: Gate) -> Middleware:
    """An aiohttp middleware selling the routes `gate` knows; other requests pass through."""

    @web.middleware
    async def l402(request: web.Request, handler: Handler) -> web.StreamResponse:
        # `request.app` is the app this middleware is attached to (aiohttp sets it for
        # each app's middlewares): routes are relative to it (gateway.embed.aiohttp_paths).
        raw_path = relative_raw_path(request.rel_url.raw_path, mount_prefix(request, request.app))
        try:
            if is_preflight(request):  # answered here on a priced resource, else the app's
                priced = gate.preflight_route(request.host, raw_path)
                if priced is None:
                    return await handler(request)
                origin, method = request.headers["Origin"], request.headers[PREFLIGHT]
                return answer_response(preflight_answer(priced.cors, origin, method))
            located = gate.locate(request.host, raw_path, request.method)
            if located is None:
                return await handler(request)
            sale = await gate.admit(
                located,
                request.headers.items(),
                client_of(request, located.table.config.trusted_proxies),
            )
        except Refusal as exc:
            return render(request, exc)
        paid = paid_of(sale)
        if paid is None:  # a free route: the app's, untouched
            return await handler(request)
        request[PAID] = paid
        return await _sell(gate, sale, request, handler)

    return l402


async def _sell(
    gate: Gate, sale: Sale, request: web.Request, handler: Handler
) -> web.StreamResponse:
    settlement = request[SETTLEMENT] = _Settlement(gate, sale)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if not settlement.settled:
            try:
                await settlement.answered(exc.status, exc, client_gone=_client_gone(request))
            except LeaseLost as lost:
                return render(request, lost)
        raise
    except BaseException:  # an error, or the client went away (handler cancelled)
        if not settlement.settled:  # else the answer had started: the token is spent
            settlement.settled = True  # aiohttp's own 500 is no answer of the app's
            await gate.failed(sale)
        raise
    if settlement.settled:
        return response
    started = response.prepared  # sent by the handler without the prepare hook
    try:
        await settlement.answered(
            response.status, response, client_gone=not started and _client_gone(request)
        )
    except LeaseLost as lost:
        if started:  # nothing left to replace; LeaseKeeper has logged it
            return response
        return render(request, lost)
    return response
