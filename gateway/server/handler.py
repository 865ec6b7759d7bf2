"""The public listener's only handler: match a route, demand or check payment, proxy.

Order for a priced route: parse the credential (none: challenge, if the
client's `challenge_rate_limit` allows another, else 429) -> verify
(cached) -> reserve a single-use token -> open the upstream -> commit the
token only if the upstream answered below 500, else release it -> stream the
body back. A failure on our side or upstream never burns a paid credential.
Commit and release name the lease this request took, so a request that
outlived its lease cannot consume or free a lease another request now holds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import NamedTuple

from aiohttp import web

from gateway.config.model import Route
from gateway.l402.errors import L402Error, Reason
from gateway.l402.verify import VerifiedToken
from gateway.proxy import PROXY_KEY, ProxyError, ProxyTarget, UpstreamResponse, client_address
from gateway.server.auth import credential_headers
from gateway.server.errors import AUTH_STATUS, NoRoute, StoreUnavailable, TokenInUse
from gateway.server.keys import (
    AUTH_KEY,
    CLOCK_KEY,
    ISSUER_KEY,
    METRICS_KEY,
    ROUTES_KEY,
    STORE_KEY,
    USAGE_KEY,
)
from gateway.server.reqkeys import ERROR, OUTCOME, ROUTE, TOKEN_ID, UPSTREAM_STATUS
from gateway.store.base import ReserveResult, StoreError

LEASE_MARGIN_SECONDS = 30
log = logging.getLogger("gateway.handler")


class _Lease(NamedTuple):
    """The single-use reservation this request holds."""

    key_id: bytes
    lease_id: bytes


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    started = time.perf_counter()
    runtime = app[ROUTES_KEY].current
    route = runtime.match(request.host, request.path, request.method)
    if route is None:
        raise NoRoute(f"no route for {request.method} {request.path}")
    request[ROUTE] = route.name
    peer = request.transport.get_extra_info("peername") if request.transport else None
    client_ip = client_address(
        peer[0] if peer else None,
        request.headers.getall("X-Forwarded-For", []),
        runtime.trusted_proxies,
    )

    if route.is_free:
        request[OUTCOME] = "free"
        target = runtime.targets[route.name]
        return await _proxy(request, route, target, None, client_ip, started, lease=None)

    try:
        offered = credential_headers(request.headers.items())
        admission = await app[AUTH_KEY].admit(offered, route)
        if admission is None:
            request[OUTCOME] = "challenge"
            return await app[ISSUER_KEY].respond(request, route, client=client_ip)
        token = admission.token
        reserved = await _reserve(request, route, token) if route.single_use else None
    except L402Error as exc:
        return await _refuse(request, route, exc, client_ip)

    app[METRICS_KEY].route(route.name).paid_requests.inc()
    app[USAGE_KEY].add(route.name)
    request[OUTCOME] = "paid"
    request[TOKEN_ID] = token.token_id_hex
    forwarded = admission.authorization if route.forward_authorization else None
    # The target from the same route table the route was matched in: a SIGHUP
    # reload while this request was being verified must not change it under us.
    target = runtime.targets[route.name]
    return await _proxy(request, route, target, forwarded, client_ip, started, lease=reserved)


async def _refuse(
    request: web.Request, route: Route, exc: L402Error, client_ip: str
) -> web.StreamResponse:
    reason = exc.reason
    app = request.app
    app[METRICS_KEY].auth_failures.labels(route=route.name, reason=reason.value).inc()
    request[OUTCOME] = f"refused_{reason.value}"
    request[ERROR] = exc.detail
    status = AUTH_STATUS[reason]
    if status == 409:
        raise TokenInUse()
    return await app[ISSUER_KEY].respond(
        request, route, client=client_ip, status=status, refusal=exc
    )


async def _reserve(request: web.Request, route: Route, token: VerifiedToken) -> _Lease:
    """Take a lease on a single-use token; exactly one concurrent request gets it."""
    lease_seconds = int(route.upstream_timeout_seconds) + LEASE_MARGIN_SECONDS
    try:
        result, lease_id = await request.app[STORE_KEY].reserve(
            token.key_id, int(request.app[CLOCK_KEY]()), lease_seconds
        )
    except StoreError as exc:
        raise StoreUnavailable(f"token store unavailable: {exc}") from exc
    if result is ReserveResult.RESERVED:
        if lease_id is None:  # the store broke its contract: never commit or release blindly
            raise StoreUnavailable("token store reserved without a lease id")
        return _Lease(token.key_id, lease_id)
    if result is ReserveResult.IN_USE:
        raise L402Error(Reason.IN_USE, "token is in use by another request")
    if result is ReserveResult.ALREADY_USED:
        raise L402Error(Reason.ALREADY_USED, "single-use token already used")
    raise L402Error(Reason.REVOKED, "unknown or revoked token")


async def _proxy(
    request: web.Request,
    route: Route,
    target: ProxyTarget,
    authorization: str | None,
    client_ip: str,
    started: float,
    *,
    lease: _Lease | None,
) -> web.StreamResponse:
    app = request.app
    series = app[METRICS_KEY].route(route.name)
    try:
        opened = await app[PROXY_KEY].open(request, target, authorization, client_ip)
    except ProxyError as exc:
        kind = "timeout" if exc.status == 504 else "error"
        if exc.status != 413:
            series.upstream_requests(kind).inc()
        if lease is not None:
            await _release(request, lease)
        raise
    series.upstream_latency.observe(opened.elapsed)
    series.upstream_requests(_status_class(opened.status)).inc()
    if lease is not None:
        await _settle_reservation(request, route, lease, opened)
    overhead = time.perf_counter() - started - opened.elapsed
    series.added_latency.observe(max(overhead, 0.0))
    request[UPSTREAM_STATUS] = opened.status
    try:
        return await app[PROXY_KEY].relay(request, opened)
    finally:
        # Past the headers nothing can be answered as HTTP: say what happened in the log.
        if opened.failure is not None:
            request[OUTCOME] = opened.failure.reason
            request[ERROR] = f"after the response started: {opened.failure.detail}"
            log.warning(
                "upstream failed mid-response",
                extra={"route": route.name, "error": opened.failure.reason},
            )
        elif opened.client_disconnected:
            request[OUTCOME] = "client_disconnected"


async def _settle_reservation(
    request: web.Request, route: Route, lease: _Lease, opened: UpstreamResponse
) -> None:
    """The upstream answered: a 5xx gives the token back, anything else consumes it."""
    if opened.status >= 500:
        await _release(request, lease)
        return
    try:
        committed = await request.app[STORE_KEY].commit(
            lease.key_id, lease.lease_id, int(request.app[CLOCK_KEY]())
        )
    except StoreError:
        # The buyer still gets the answer it paid for; the lease lapses and the
        # token becomes usable once more rather than being burned by our failure.
        log.warning("could not mark a single-use token used", extra={"route": route.name})
        return
    if not committed:
        # This request outlived its lease and another request took the token over;
        # that request decides whether it is consumed. The upstream has answered
        # and withholding the body would not undo that: serve it (status-codes.md).
        request[ERROR] = "single-use lease lost before commit"
        log.warning("single-use token lease lost before commit", extra={"route": route.name})
        return
    request.app[METRICS_KEY].tokens_consumed.labels(route=route.name).inc()


async def _release(request: web.Request, lease: _Lease) -> None:
    # Acts only on our own lease: if it was lost, another request holds the token now.
    # If this fails the lease expires on its own and the token becomes usable again.
    with contextlib.suppress(StoreError):
        await request.app[STORE_KEY].release(lease.key_id, lease.lease_id)
