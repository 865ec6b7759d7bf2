"""The public listener's HTTP/1.1 handler: locate, answer preflights, decide payment, forward.

Discovery documents (gateway.server.discovery_endpoint) are answered first, before
any route is looked up.

Built once with its collaborators (no `request.app[...]` lookups), so the
whole request path runs in unit tests with an in-memory invoice source and an
in-memory SQLite store. The decision itself is the transport-neutral
`Paywall` (gateway.paywall.decision), shared with the HTTP/2 engine and the
embedded middleware; forwarding is gateway.server.forwarding. Every refusal
is raised as a typed `Refusal` and rendered by the error middleware.
"""

from __future__ import annotations

import time

from aiohttp import web

from gateway.paywall.decision import Paywall
from gateway.paywall.refusals import Refusal
from gateway.server.caller import client_of
from gateway.server.cors import PREFLIGHT, is_preflight, preflight_response
from gateway.server.discovery_endpoint import DiscoveryHandler
from gateway.server.errors import PaymentRequired
from gateway.server.forwarding import Forwarder
from gateway.server.reqkeys import CORS, ERROR, OUTCOME, PATH, ROUTE, TOKEN_ID


class PublicHandler:
    def __init__(
        self,
        paywall: Paywall,
        forwarder: Forwarder | None = None,
        discovery: DiscoveryHandler | None = None,
    ) -> None:
        self.paywall = paywall
        self._forwarder = forwarder
        self._discovery = discovery

    def attach(self, forwarder: Forwarder) -> None:
        """Called once by the app's start-up context, when the upstream pool exists."""
        self._forwarder = forwarder

    @property
    def attached_forwarder(self) -> Forwarder | None:
        return self._forwarder

    @property
    def forwarder(self) -> Forwarder:
        if self._forwarder is None:
            raise RuntimeError("PublicHandler used before its forwarder was attached")
        return self._forwarder

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if self._discovery is not None:  # before any route: never priced or forwarded
            answered = self._discovery.answer(request)
            if answered is not None:
                return answered
        preflight = is_preflight(request)
        method = request.headers[PREFLIGHT] if preflight else request.method
        located = self.paywall.locate(request.host, request.rel_url.raw_path, method)
        runtime = located.runtime
        request[PATH] = located.path.raw
        request[ROUTE] = runtime.name
        if runtime.cors is not None:
            request[CORS] = runtime.cors
        if preflight:
            request[OUTCOME] = "preflight"
            return preflight_response(request, runtime.cors)
        client = client_of(request, located.table.config.trusted_proxies)
        try:
            admitted = await self.paywall.admit(located, request.headers.items(), client)
        except Refusal as exc:
            if isinstance(exc, PaymentRequired) and exc.refused is not None:
                request[ERROR] = exc.refused.detail  # secret-free by the core's contract
            raise
        if admitted.token is None:
            request[OUTCOME] = "free"
        else:
            request[OUTCOME] = "paid"
            request[TOKEN_ID] = admitted.token.token_id_hex
        return await self.forwarder.forward(
            request, runtime, located.path, client, admitted.authorization, started, admitted.lease
        )
