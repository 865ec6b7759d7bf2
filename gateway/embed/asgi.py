"""The embedded middleware for ASGI apps (Starlette, FastAPI, any ASGI 3 app).

    app.add_middleware(L402Middleware, paywall=seller)   # Starlette / FastAPI
    app = L402Middleware(app, paywall=seller)            # any ASGI app

Plain ASGI, no framework import. Lifespan: the seller's store, LND client and
background tasks open when the server sends `lifespan.startup` (before the
app's own start-up) and close after the app's shutdown completes; a seller
that cannot start fails the server's start-up with a secret-free message.
Without lifespan events priced routes answer 503 `not_started`.

HTTP: unpaid requests to a priced route are answered here (402 + challenge,
rendered by gateway.server.errors as the proxy renders it); paid ones reach
the app with `scope["state"]["l402"]` (`request.state.l402`) set to a `Paid`.
The app's `http.response.start` is held until the single-use token is
settled on its status (a lapsed lease turns it into the proxy's 409); a
client gone before that (gateway.embed.inbox), an exception or no answer
give the token back.

WebSocket: a priced route is paid like HTTP, with the handshake carrying the
credential. A refusal is sent as an HTTP answer where the server supports
the `websocket.http.response` extension, else as a close before accepting
(HTTP 403). The handshake's answer settles a single-use token as an HTTP
answer would: `websocket.accept` (101) and a denial (a close before
accepting: 403, or the app's own HTTP answer below 500) consume it; an
exception, or a client gone before the answer, give it back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.embed.asgipath import priced_raw_path
from gateway.embed.gate import Gate, paid_of
from gateway.embed.inbox import Inbox, Message, Receive
from gateway.http.clientinfo import ClientInfo
from gateway.paywall.answers import Answer, is_grpc_content_type, refusal_answer
from gateway.paywall.decision import Located
from gateway.paywall.preflight import preflight_answer
from gateway.paywall.refusals import LeaseLost, Refusal
from gateway.paywall.sale import Sale

if TYPE_CHECKING:
    from gateway.embed.l402 import L402

log = logging.getLogger("gateway.embed")

Scope = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
STATE_KEY = "l402"  # scope["state"]["l402"]: the Paid of an admitted request
WS_DENIAL = "websocket.http.response"
WS_POLICY_VIOLATION = 1008
_LIFESPAN_ENDS = frozenset(
    {"lifespan.shutdown.complete", "lifespan.shutdown.failed", "lifespan.startup.failed"}
)


def _headers(scope: Scope) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope.get("headers", [])]


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _request_line(scope: Scope, headers: list[tuple[str, str]]) -> tuple[str, str]:
    """(host, raw path): the Host the client sent, the path the app's router will match
    (relative to `root_path`: gateway.embed.asgipath)."""
    host = _header(headers, "host")
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else ""
    return host, priced_raw_path(scope)


def _client(
    scope: Scope, headers: list[tuple[str, str]], host: str, located: Located
) -> ClientInfo:
    peer = scope.get("client")
    return ClientInfo.resolve(
        peer[0] if peer else None,
        [v for k, v in headers if k.lower() == "x-forwarded-for"],
        [v for k, v in headers if k.lower() == "x-forwarded-proto"],
        [v for k, v in headers if k.lower() == "x-forwarded-host"],
        scope.get("scheme", "http"),
        host,
        located.table.config.trusted_proxies,
    )


def _is_preflight(scope: Scope, headers: list[tuple[str, str]]) -> bool:
    return (
        scope.get("method") == "OPTIONS"
        and _header(headers, "origin") is not None
        and _header(headers, "access-control-request-method") is not None
    )


def _start(answer: Answer, prefix: str) -> tuple[Message, Message]:
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers]
    if answer.status != 204:  # RFC 9110 §8.6: no Content-Length on a 204
        headers.append((b"content-length", str(len(answer.body)).encode()))
    return (
        {"type": f"{prefix}.start", "status": answer.status, "headers": headers},
        {"type": f"{prefix}.body", "body": answer.body, "more_body": False},
    )


async def send_answer(send: Send, answer: Answer, prefix: str = "http.response") -> None:
    for message in _start(answer, prefix):
        await send(message)


class L402Middleware:
    def __init__(self, app: ASGIApp, *, paywall: L402) -> None:
        self.app = app
        self.paywall = paywall
        self._gate: Gate = paywall.gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind in ("http", "websocket"):
            await self._request(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        websocket = scope["type"] == "websocket"
        host, raw_path = _request_line(scope, headers)
        try:
            if not websocket and _is_preflight(scope, headers):
                priced = self._gate.preflight_route(host, raw_path)
                if priced is None:  # a free resource: the app's (and its CORS middleware's)
                    await self.app(scope, receive, send)
                    return
                origin = _header(headers, "origin") or ""
                method = _header(headers, "access-control-request-method") or ""
                await send_answer(send, preflight_answer(priced.cors, origin, method))
                return
            located = self._gate.locate(host, raw_path, "GET" if websocket else scope["method"])
            if located is None:
                await self.app(scope, receive, send)
                return
            sale = await self._gate.admit(located, headers, _client(scope, headers, host, located))
        except Refusal as exc:
            await self._refuse(scope, headers, send, exc)
            return
        paid = paid_of(sale)
        if paid is None:  # a free route: the app's, untouched
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = paid
        inbox = Inbox(receive, scope.get("headers", []))
        exchange = _Exchange(self._gate, sale, inbox, send, websocket)
        try:
            await self.app(scope, inbox.receive, exchange.send)
        except BaseException:
            if not exchange.answered:
                exchange.answered = True
                await self._gate.failed(sale)
            raise
        finally:
            await exchange.end()
        if not exchange.answered:  # returned without answering (the server answers 500)
            exchange.answered = True
            await self._gate.failed(sale)

    async def _refuse(
        self, scope: Scope, headers: list[tuple[str, str]], send: Send, exc: Refusal
    ) -> None:
        if scope["type"] == "http":
            grpc = is_grpc_content_type(_header(headers, "content-type") or "")
            await send_answer(send, refusal_answer(exc, grpc=grpc))
        elif WS_DENIAL in scope.get("extensions", {}):
            await send_answer(send, refusal_answer(exc), prefix=WS_DENIAL)
        else:
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed = False

        async def startup_first() -> Message:
            nonlocal failed
            message = await receive()
            if message.get("type") == "lifespan.startup":
                try:
                    await self.paywall.start()
                except Exception as exc:
                    failed = True
                    reason = _startup_error(exc)
                    log.error("L402 start-up failed", extra={"error": reason})
                    await send({"type": "lifespan.startup.failed", "message": reason})
                    raise
            return message

        async def shutdown_last(message: Message) -> None:
            if message.get("type") in _LIFESPAN_ENDS:  # the app's own shutdown is over
                await self.paywall.stop()
            await send(message)

        try:
            await self.app(scope, startup_first, shutdown_last)
        except Exception:
            if not failed:
                raise
        finally:
            await self.paywall.stop()  # no-op when stopped; covers an app that just returns


def _startup_error(exc: Exception) -> str:
    """What the server logs: the kind of failure, from messages known to be secret-free."""
    from gateway.lightning import BackendError
    from gateway.store.types import StoreError

    if isinstance(exc, BackendError | StoreError | OSError | ValueError):
        return f"L402 middleware could not start: {type(exc).__name__}: {exc}"
    return f"L402 middleware could not start: {type(exc).__name__}"


def _content_type(message: Message) -> str:
    for name, value in message.get("headers", []):
        if bytes(name).lower() == b"content-type":
            return bytes(value).decode("latin-1")
    return ""


class _Exchange:
    """The app's `send` for one paid request: settle before the answer goes out."""

    def __init__(self, gate: Gate, sale: Sale, inbox: Inbox, send: Send, websocket: bool) -> None:
        self._gate = gate
        self._sale = sale
        self._inbox = inbox
        self._send = send
        self._websocket = websocket
        self.answered = False
        self._replaced = False  # the app's answer was replaced by a 409: drop the rest
        self._body_done = False  # the last body message went out (or the watcher ended it)

    async def send(self, message: Message) -> None:
        if self._replaced or self._body_done:
            return
        if not self.answered:
            status = self._status(message)
            if status is not None:
                self.answered = True
                if not await self._settle(status, _content_type(message)):
                    return
                message = self._with_headers(message)
        elif message.get("type") == "http.response.body":
            message = await self._watched(message)
        await self._send(message)

    def _with_headers(self, message: Message) -> Message:
        """The sale's own answer headers (a balance, a receipt) added to the app's."""
        added = self._sale.answer_headers
        if not added or message.get("type") != "http.response.start":
            return message
        headers = [*message.get("headers", [])]
        if self._sale.watch is not None:  # a watcher may add bytes: no declared length
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        headers += [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in added]
        return {**message, "headers": headers}

    async def _watched(self, message: Message) -> Message:
        watch = self._sale.watch
        last = not message.get("more_body", False)
        if watch is None:
            self._body_done = last
            return message

        async def send_more(body: bytes) -> None:
            if body:
                await self._send({"type": "http.response.body", "body": body, "more_body": True})

        await watch.feed(bytes(message.get("body", b"")), send_more)
        if not watch.ended and last:
            await watch.drain(send_more)
        if watch.ended:
            last = True
        self._body_done = last
        if last:
            await self._sale.finished(not watch.ended)
        return {"type": "http.response.body", "body": b"", "more_body": not last}

    async def end(self) -> None:
        """The app is done: a metered answer cut short is debited for what went."""
        if self.answered and not self._replaced and self._sale.watch is not None:
            await self._sale.finished(False)  # no-op when already finished

    def _status(self, message: Message) -> int | None:
        """The status this message answers with; None when it does not answer yet."""
        kind = message.get("type")
        if kind == "http.response.start" or kind == f"{WS_DENIAL}.start":
            return int(message["status"])
        if kind == "websocket.accept":
            return 101
        if kind == "websocket.close":
            return 403  # closed before accepting: the server denies the handshake
        return None

    async def _settle(self, status: int, content_type: str) -> bool:
        """Settle the lease; False when the answer was replaced (the lease was lost)."""
        gone = self._inbox.disconnected if self._websocket else await self._inbox.client_gone()
        try:
            await self._gate.answered(
                self._sale, status, client_gone=gone, content_type=content_type
            )
        except LeaseLost as lost:
            self._replaced = True
            if self._websocket:
                await self._send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            else:
                await send_answer(self._send, refusal_answer(lost))
            return False
        return True
