"""The server's side of the HTTP/2 engine: gRPC requests decided by the same paywall.

For each HTTP/2 stream the engine (gateway.h2engine) asks `decide`: the
request is located and admitted exactly as an HTTP/1.1 request is
(gateway.paywall: the same path normal form, route table, credentials,
challenges, rate limit and single-use leases), then forwarded over HTTP/2 to
the route's upstream (h2c for `http://`, TLS with ALPN `h2` for `https://`).
Refusals become gRPC answers (gateway.paywall.answers): an unpaid call gets
Aperture's trailers-only answer (grpc-status 13, "payment required", both
WWW-Authenticate values); the others a gRPC status clients act on. Plain
(non-gRPC) HTTP/2 requests are refused with 505: the HTTP routes are served
over HTTP/1.1.

The stream's `Ticket` settles the request's `Sale` like the HTTP/1.1 path
does: consumed once the upstream answered (and not with UNAVAILABLE or a
5xx), given back when the upstream failed or the client left before the
answer.
"""

from __future__ import annotations

import asyncio
import json

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.h2engine.api import FailReason, Forward, Refuse, StreamHead, StreamOutcome
from gateway.http.clientinfo import ClientInfo
from gateway.paywall.access import AccessRecord, new_request_id
from gateway.paywall.answers import GRPC_UNAVAILABLE, grpc_refusal_headers, grpc_status_for
from gateway.paywall.decision import Paywall
from gateway.paywall.located import Located
from gateway.paywall.refusals import MeteredOverGrpc, Refusal
from gateway.paywall.sale import Sale
from gateway.proxy.headers import headers_for_target
from gateway.server.targets import RouteTargets

# An upstream answer that says the call was not served: the token is given back.
NOT_SERVED = frozenset({GRPC_UNAVAILABLE})


def refuse(refusal: Refusal) -> Refuse:
    headers, message = grpc_refusal_headers(refusal)
    body = json.dumps({"error": refusal.reason, "message": message}).encode()
    return Refuse(
        refusal.status,
        tuple(headers),
        body,
        grpc_status=grpc_status_for(refusal),
        grpc_message=message,
    )


class H2Admission:
    """`gateway.h2engine.api.Admission` on the shared paywall."""

    def __init__(self, paywall: Paywall, targets: RouteTargets) -> None:
        self._paywall = paywall
        self._targets = targets

    async def decide(self, head: StreamHead) -> Refuse | Forward:
        raw_path, _, query = head.path.partition("?")
        record = AccessRecord(new_request_id(), head.method, raw_path)
        if not head.is_grpc:
            record.outcome = "http2_not_grpc"
            record.done(505)
            return Refuse(505, (), b'{"error": "http2_not_grpc", "message": "use HTTP/1.1"}')
        try:
            located = self._paywall.locate(head.authority, raw_path, head.method)
            if located.runtime.route.metered:  # the HTTP/2 relay does not meter answers
                raise MeteredOverGrpc()
            client = self._client(head, located)
            sale = await self._paywall.admit(located, head.headers, client, record)
        except Refusal as exc:
            record.refused(exc)
            record.done(exc.status)
            return refuse(exc)
        runtime = located.runtime
        target = self._targets.http(located.table, runtime)
        url = target.url_for(located.path.raw, query)
        headers = headers_for_target(
            CIMultiDictProxy(CIMultiDict(head.headers)), target, client, sale.authorization
        )
        headers.popall("Host", None)  # HTTP/2 carries it as :authority
        return Forward(
            self._targets.h2(located.table, runtime),
            url.raw_path_qs,
            tuple((name.lower(), value) for name, value in headers.items()),
            _StreamTicket(sale, record),
        )

    def _client(self, head: StreamHead, located: Located) -> ClientInfo:
        return ClientInfo.resolve(
            head.peer,
            head.values("x-forwarded-for"),
            head.values("x-forwarded-proto"),
            head.values("x-forwarded-host"),
            head.scheme,
            head.authority,
            located.table.config.trusted_proxies,
        )


class _StreamTicket:
    """One forwarded stream's `Sale`, settled in the engine's ticket order
    (gateway.h2engine.api)."""

    def __init__(self, sale: Sale, record: AccessRecord) -> None:
        self._sale = sale
        self._record = record

    async def answered(self, status: int, grpc_status: int | None) -> None:
        served = status < 500 and grpc_status not in NOT_SERVED
        try:
            await self._sale.answered(status, served=served)
        except Refusal as exc:  # the lease lapsed under a stalled store: say so, cannot undo
            self._sale.note(exc.message)

    async def failed(self, reason: FailReason) -> None:
        timeout = reason in (FailReason.CONNECT_TIMEOUT, FailReason.DEADLINE)
        await self._sale.failed("timeout" if timeout else "error", f"upstream: {reason.value}")

    def finished(self, outcome: StreamOutcome) -> None:
        if not self._sale.settled:
            # The client left before the upstream answered: nothing was delivered.
            task = asyncio.ensure_future(self._sale.client_left())
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
        if outcome.cancelled_by_client:
            self._record.outcome = "client_disconnected"
        elif outcome.error is not None:
            self._record.outcome = outcome.error
        self._record.done(200 if outcome.status is not None else 502)


_BACKGROUND: set[asyncio.Future[None]] = set()
