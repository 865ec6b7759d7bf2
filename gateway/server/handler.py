"""The public listener's HTTP/1.1 handler: locate, answer preflights, decide payment, forward.

Discovery documents (gateway.server.discovery_endpoint) are answered first,
before any route is looked up.

Built once with its collaborators (no `request.app[...]` lookups), so the
whole request path runs in unit tests with an in-memory invoice source and an
in-memory SQLite store. The decision itself is the transport-neutral
`Paywall` (gateway.paywall), shared with the HTTP/2 engine and the embedded
middleware; it hands back a `Sale` that forwarding settles
(gateway.server.forwarding). Every refusal is raised as a typed `Refusal` and
rendered by the error middleware.
"""

from __future__ import annotations

from aiohttp import web

from gateway.aioweb.caller import client_of
from gateway.aioweb.cors import CORS, PREFLIGHT, is_preflight, preflight_response
from gateway.paywall.decision import Paywall
from gateway.pricer.requestview import needs_details
from gateway.server.discovery_endpoint import DiscoveryHandler
from gateway.server.forwarding import Forwarder
from gateway.server.reqkeys import ACCESS
from gateway.server.requestdetails import HttpRequestDetails


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

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        record = request[ACCESS]
        if self._discovery is not None:  # before any route: never priced or forwarded
            answered = self._discovery.answer(request, record)
            if answered is not None:
                return answered
        preflight = is_preflight(request)
        method = request.headers[PREFLIGHT] if preflight else request.method
        located = self.paywall.locate(request.host, request.rel_url.raw_path, method)
        runtime = located.runtime
        record.route = runtime.name
        record.path = located.path.raw
        if runtime.cors is not None:
            request[CORS] = runtime.cors
        if preflight:
            record.outcome = "preflight"
            return preflight_response(request, runtime.cors)
        client = client_of(request, located.table.config.trusted_proxies)
        details = None
        if needs_details(runtime.route):  # metered, or an Aperture pricer: may read the body
            details = HttpRequestDetails(request, self.forwarder.target(located))
        sale = await self.paywall.admit(
            located, request.headers.items(), client, record, details=details
        )
        if details is None:
            return await self.forwarder.forward(request, located, client, sale)
        return await self.forwarder.forward(
            request, located, client, sale, details.consumed, details.whole
        )
