"""Forward an admitted request upstream and relay the answer, settling its `Sale`.

Order: (100 Continue, if the client asked and the request is admitted) ->
open the upstream (the body streams; deadlines inside the lease) -> the sale
is answered with the upstream's status (a single-use token consumed or given
back: gateway.paywall.sale) -> stream the body back. A client that disconnects
before the answer starts cancels the handler (`handler_cancellation`): the
upstream request is dropped and the token given back. Once the answer has
started, the token is consumed.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http import HttpVersion11

from gateway.http.clientinfo import ClientInfo
from gateway.paywall.located import Located
from gateway.paywall.refusals import ExpectationFailed
from gateway.paywall.sale import Sale
from gateway.proxy import (
    BodyTooLarge,
    Proxy,
    ProxyError,
    ProxyTarget,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.websocket import is_websocket_upgrade
from gateway.server.reqkeys import ACCESS, CONTINUED
from gateway.server.targets import RouteTargets
from gateway.server.upgrade import WebSocketForwarder

log = logging.getLogger("gateway.forwarding")
_PLAINTEXT = ("Accept-Encoding",)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def send_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` only once the request is admitted.

    The route's expect handler does nothing (gateway.server.app), so an unpaid
    client is never invited to upload a body it would send for nothing.
    """
    expect = request.headers.get("Expect")
    if expect is None or request.get(CONTINUED):
        return
    if expect.lower() != "100-continue":
        raise ExpectationFailed(f"unsupported Expect: {expect[:40]!r}")
    if request.version == HttpVersion11 and request.body_exists:
        request[CONTINUED] = True  # a metered route's estimate may have read the body already
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # the 100 is not part of the response


# A paid client whose body is over the limit is still reading for our answer once it
# has sent everything: read (and drop) this much so it sees the 413, then give up.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


async def drain_for_answer(request: web.BaseRequest, limit: int, seconds: float) -> None:
    """Read and drop the rest of a paid request's body, within a byte and time bound.

    Unpaid bodies are never read (the connection is closed after the answer:
    lingering is off); a paid client whose body was refused gets its 413
    instead of a reset, unless it keeps sending past the bound.
    """
    content = request.content
    received = 0
    try:
        async with asyncio.timeout(seconds):
            while received <= limit:
                chunk = await content.readany()
                if not chunk:
                    return
                received += len(chunk)
    except (TimeoutError, ConnectionError):
        return


def upstream_failure_class(exc: ProxyError) -> str | None:
    """The status_class label of an upstream failure; None for the client's own body errors."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamUnreachable):
        return "error"
    return None


async def _finish(sale: Sale, complete: bool) -> None:
    """Settle a watched answer; shielded from a cancellation under way (the client left),
    plainly awaited otherwise (a task per answer was a measurable part of its CPU)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        await asyncio.shield(sale.finished(complete))
    else:
        await sale.finished(complete)


class Forwarder:
    def __init__(self, proxy: Proxy, targets: RouteTargets) -> None:
        self._proxy = proxy
        self._targets = targets
        self.websockets = WebSocketForwarder(targets)

    def target(self, located: Located) -> ProxyTarget:
        return self._targets.http(located.table, located.runtime)

    async def forward(
        self,
        request: web.BaseRequest,
        located: Located,
        client: ClientInfo,
        sale: Sale,
        prefix: bytes = b"",
        whole: bool = False,
    ) -> web.StreamResponse:
        """`prefix`: body bytes the decision already read (gateway.server.requestdetails);
        `whole`: all of the body."""
        if is_websocket_upgrade(request):
            return await self.websockets.forward(request, located, client, sale)
        target = self.target(located)
        # A route whose answers are read for usage needs them in plaintext (Aperture's rule).
        drop = _PLAINTEXT if located.runtime.route.reads_answers else ()
        try:
            await send_continue(request)
            opened = await self._proxy.open(
                request,
                target,
                located.path.raw,
                client,
                sale.authorization,
                prefix=prefix,
                whole=whole,
                drop_headers=drop,
            )
        except ProxyError as exc:
            await sale.failed(upstream_failure_class(exc))
            if isinstance(exc, BodyTooLarge):
                await drain_for_answer(request, DRAIN_LIMIT_BYTES, target.body_timeout_seconds)
            raise
        except asyncio.CancelledError:  # the client went away before the answer
            await sale.client_left()
            raise
        except BaseException:  # an unexpected error: no answer, so the token is kept
            await sale.failed(None)
            raise
        try:
            await sale.answered(opened.status, headers=opened.headers.items())
        except BaseException:
            opened.close()
            raise
        try:
            own = (*sale.answer_headers, ("X-Request-Id", request[ACCESS].request_id))
            return await self._proxy.relay(request, opened, own, sale.watch)
        except asyncio.CancelledError:
            sale.outcome("client_disconnected")
            raise
        finally:
            if sale.watch is not None:  # a metered hold debits what went, even if cancelled
                await _finish(sale, opened.complete)
            # Past the headers nothing can be answered as HTTP: say what happened in the log.
            if opened.failure is not None:
                sale.outcome(opened.failure.reason)
                sale.note(f"after the response started: {opened.failure.detail}")
                log.warning(
                    "upstream failed mid-response",
                    extra={"route": located.runtime.name, "error": opened.failure.reason},
                )
            elif opened.client_disconnected:
                sale.outcome("client_disconnected")
