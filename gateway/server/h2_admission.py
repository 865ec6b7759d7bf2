"""The server's side of the HTTP/2 engine: gRPC requests decided by the same paywall.

For each HTTP/2 stream the engine (gateway.h2engine) asks `decide`: the request is
located and admitted exactly as an HTTP/1.1 request is (gateway.paywall.decision:
the same path normal form, route table, credentials, challenges, rate limit
and single-use leases), then forwarded over HTTP/2 to the route's upstream
(h2c for `http://`, TLS with ALPN `h2` for `https://`). Refusals become gRPC
answers: an unpaid call gets Aperture's trailers-only answer (grpc-status 13,
"payment required", both WWW-Authenticate values); the others a gRPC status
clients act on. Plain (non-gRPC) HTTP/2 requests are refused with 505: the
HTTP routes are served over HTTP/1.1.

The stream's `Ticket` settles a single-use lease like the HTTP/1.1 path does:
consumed once the upstream answered (and not with UNAVAILABLE or a 5xx),
given back when the upstream failed or the client left before the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config.model import Route
from gateway.h2engine.api import FailReason, Forward, H2Target, Refuse, StreamHead, StreamOutcome
from gateway.http.clientinfo import ClientInfo
from gateway.l402 import challenge as l402_challenge
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.decision import Located, Paywall
from gateway.paywall.leases import Lease, LeaseKeeper
from gateway.paywall.refusals import Refusal
from gateway.paywall.routes import RouteRuntime, RuntimeRoutes
from gateway.proxy.headers import headers_for_target
from gateway.server.errors import (
    BadRequestPath,
    ChallengeRateLimited,
    PaymentRequired,
    TokenInUse,
)
from gateway.server.middleware import new_request_id

access_log = logging.getLogger("gateway.access")
log = logging.getLogger("gateway.h2_admission")

# gRPC status codes (grpc/doc/statuscodes.md).
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 3, 8, 12, 13, 14
UNKNOWN = 2
# An upstream answer that says the call was not served: the token is given back.
NOT_SERVED = frozenset({UNAVAILABLE})


def grpc_status_for(refusal: Refusal) -> int:
    """The gRPC status a client acts on for each refusal (one table, by type)."""
    if isinstance(refusal, PaymentRequired):
        return INTERNAL  # Aperture's: gRPC clients look for the L402 challenge with it
    if isinstance(refusal, ChallengeRateLimited):
        return RESOURCE_EXHAUSTED
    if isinstance(refusal, BadRequestPath):
        return INVALID_ARGUMENT
    if refusal.status in (404, 405, 501):
        return UNIMPLEMENTED
    if isinstance(refusal, TokenInUse) or refusal.status == 503:
        return UNAVAILABLE  # retryable: the store or LND will be back, the lease will end
    return INTERNAL


def refuse(refusal: Refusal) -> Refuse:
    headers: list[tuple[str, str]] = []
    if isinstance(refusal, PaymentRequired):
        ch = refusal.challenge
        headers = [
            (name.lower(), value)
            for name, value in l402_challenge.headers(ch.macaroon_b64, ch.invoice, ch.amount_msats)
        ]
        message = "payment required"
    else:
        message = refusal.message
    if refusal.retry_after is not None:
        headers.append(("retry-after", str(refusal.retry_after)))
    body = json.dumps({"error": refusal.reason, "message": message}).encode()
    return Refuse(
        refusal.status,
        tuple(headers),
        body,
        grpc_status=grpc_status_for(refusal),
        grpc_message=message,
    )


def h2_target(route: Route, upstream_host: str, port: int) -> H2Target:
    """One per route and table (targets and their TLS contexts are the pool's keys)."""
    tls = None
    if route.upstream.startswith("https://"):
        ca = str(route.upstream_ca_file) if route.upstream_ca_file else None
        tls = ssl.create_default_context(cafile=ca)
        if not route.upstream_tls_verify:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["h2"])
    authority = f"{upstream_host}:{port}"
    return H2Target(upstream_host, port, tls, authority, route.upstream_timeout_seconds)


class _Targets:
    """H2 targets of the current route table, rebuilt when a reload swaps the table."""

    def __init__(self) -> None:
        self._table: RuntimeRoutes | None = None
        self._by_route: dict[str, H2Target] = {}

    def get(self, table: RuntimeRoutes, runtime: RouteRuntime) -> H2Target:
        if table is not self._table:
            self._table, self._by_route = table, {}
        target = self._by_route.get(runtime.name)
        if target is None:
            url = runtime.target.upstream
            port = url.explicit_port or (443 if url.scheme == "https" else 80)
            target = self._by_route[runtime.name] = h2_target(runtime.route, url.host or "", port)
        return target


class H2Admission:
    """`gateway.h2engine.api.Admission` on the shared paywall."""

    def __init__(self, paywall: Paywall, metrics: GatewayMetrics) -> None:
        self._paywall = paywall
        self._metrics = metrics
        self._targets = _Targets()

    @property
    def leases(self) -> LeaseKeeper:
        return self._paywall.services.leases

    @property
    def metrics(self) -> GatewayMetrics:
        return self._metrics

    async def decide(self, head: StreamHead) -> Refuse | Forward:
        started = time.perf_counter()
        record = _Record(head)
        if not head.is_grpc:
            record.done(505, "http2_not_grpc")
            return Refuse(505, (), b'{"error": "http2_not_grpc", "message": "use HTTP/1.1"}')
        raw_path, _, query = head.path.partition("?")
        try:
            located = self._paywall.locate(head.authority, raw_path, head.method)
            record.route = located.runtime.name
            record.path = located.path.raw
            client = self._client(head, located)
            admitted = await self._paywall.admit(located, head.headers, client)
        except Refusal as exc:
            if isinstance(exc, PaymentRequired) and exc.refused is not None:
                record.error = exc.refused.detail
            record.done(exc.status, exc.reason)
            return refuse(exc)
        runtime = located.runtime
        if admitted.token is not None:
            record.token_id = admitted.token.token_id_hex
        record.outcome = "free" if admitted.token is None else "paid"
        url = runtime.target.url_for(located.path.raw, query)
        headers = headers_for_target(
            CIMultiDictProxy(CIMultiDict(head.headers)),
            runtime.target,
            client,
            admitted.authorization,
        )
        headers.popall("Host", None)  # HTTP/2 carries it as :authority
        ticket = _StreamTicket(self, runtime, admitted.lease, record, started)
        return Forward(
            self._targets.get(located.table, runtime),
            url.raw_path_qs,
            tuple((name.lower(), value) for name, value in headers.items()),
            ticket,
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


@dataclass
class _Record:
    """One access-log line per stream, as the HTTP/1.1 middleware writes them."""

    head: StreamHead
    route: str | None = None
    path: str | None = None
    outcome: str | None = None
    token_id: str | None = None
    error: str | None = None
    upstream_status: int | None = None
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    def done(self, status: int, outcome: str | None = None) -> None:
        access_log.info(
            "request",
            extra={
                "request_id": new_request_id(),
                "route": self.route,
                "outcome": outcome or self.outcome,
                "status": status,
                "method": self.head.method,
                "path": (self.path or self.head.path.partition("?")[0])[:512],
                "duration_ms": round((time.perf_counter() - self.started) * 1000, 3),
                "upstream_status": self.upstream_status,
                "token_id": self.token_id,
                "error": self.error,
            },
        )


class _StreamTicket:
    """Lease and metrics bookkeeping for one forwarded stream (gateway.h2engine.api.Ticket)."""

    def __init__(
        self,
        admission: H2Admission,
        runtime: RouteRuntime,
        lease: Lease | None,
        record: _Record,
        started: float,
    ) -> None:
        self._leases = admission.leases
        self._series = admission.metrics.route(runtime.name)
        self._lease = lease
        self._record = record
        self._started = started
        self._settled = lease is None

    async def answered(self, status: int, grpc_status: int | None) -> None:
        self._series.upstream_latency.observe(time.perf_counter() - self._started)
        self._series.upstream_requests(f"{status // 100}xx").inc()
        self._record.upstream_status = status
        lease, self._settled = self._lease, True
        if lease is None:
            return
        if status >= 500 or grpc_status in NOT_SERVED:
            await self._leases.release(lease)
            return
        try:
            await self._leases.settle(lease, status)
        except Refusal as exc:  # the lease lapsed under a stalled store: say so, cannot undo
            self._record.error = exc.message

    async def failed(self, reason: FailReason) -> None:
        timeout = reason in (FailReason.CONNECT_TIMEOUT, FailReason.DEADLINE)
        self._series.upstream_requests("timeout" if timeout else "error").inc()
        self._record.error = f"upstream: {reason.value}"
        lease, self._settled = self._lease, True
        if lease is not None:
            await self._leases.release(lease)

    def finished(self, outcome: StreamOutcome) -> None:
        if not self._settled and self._lease is not None:
            # The client left before the upstream answered: nothing was delivered.
            self._settled = True
            task = asyncio.ensure_future(self._leases.release(self._lease))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
        if outcome.cancelled_by_client:
            self._record.outcome = "client_disconnected"
        elif outcome.error is not None:
            self._record.outcome = outcome.error
        self._record.done(200 if outcome.status is not None else 502)


_BACKGROUND: set[asyncio.Future[None]] = set()
