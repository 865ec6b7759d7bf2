"""The listening edge: bounded connections, deadlines on idle and slow clients,
and safe answers to requests aiohttp cannot parse.

Measured before this existed: 3,000 idle connections against `nofile` 1024
stopped both listeners for 200+ s, a slowloris held 3,000 connections for a
whole test, and aiohttp kept idle keep-alive connections for 3,630 s. Now:

- every listener has a connection cap (`ConnectionGate`) set below the
  descriptor limit, so `accept()` never runs out of descriptors and the admin
  listener, LND, the store and the upstream pool always have theirs; a
  connection over the cap is closed at once;
- a request head must arrive within `header_timeout` of its first byte, and
  an idle connection lives at most `keepalive_timeout` (`EdgeProtocol`);
- a request aiohttp cannot parse gets a fixed JSON answer (414 for an
  over-long target, 431 for an over-long header, 501 for an unknown method,
  400 otherwise) and a log line with the exception's type only: the parser's
  messages quote the raw request, credentials included (`EdgeRequestHandler`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway.l402.grammar import TCHARS

log = logging.getLogger("gateway.edge")

MAX_TARGET_BYTES = 8192  # aiohttp's max_line_size: the request line's target
MAX_HEADER_BYTES = 8190  # aiohttp's max_field_size: one header (different, to tell them apart)
ADMIN_MAX_CONNECTIONS = 64
UPSTREAM_POOL_LIMIT = 256
_RESERVED_DESCRIPTORS = 64  # LND channel, store files, logs, DNS, ...


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def default_max_connections(nofile: int) -> int:
    """Public connections that fit beside the admin listener, the upstream pool and the rest."""
    spare = nofile - ADMIN_MAX_CONNECTIONS - UPSTREAM_POOL_LIMIT - _RESERVED_DESCRIPTORS
    return max(16, spare)


HEAD_START_BYTES = 32  # enough for any method and the space after it


class ConnectionGate:
    """Counts one listener's open connections against its cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def admit(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ProtocolFactory = Callable[[], asyncio.Protocol]


class EdgeProtocol(asyncio.Protocol):
    """Wraps a connection's protocol with the cap, the head/idle deadlines and, when an
    HTTP/2 engine is given, the choice between HTTP/1.1 and HTTP/2 on one port.

    HTTP/2 with prior knowledge (how gRPC clients speak h2c) opens with a fixed
    24-byte preface no HTTP/1.1 request can start with: as soon as the first
    bytes differ from it the connection goes to aiohttp, once all 24 match to
    the HTTP/2 engine (gateway.h2engine), which keeps its own stream deadlines. This
    protocol stays the transport's protocol either way and forwards to the one
    chosen, so the connection cap counts both kinds until they close.

    For HTTP/1.1 the timer runs while no request is being handled: from the
    connection's start or the end of its last response, the next request's
    first byte must come within `keepalive_timeout`, and its whole head within
    `header_timeout` of that first byte. The request-context middleware calls
    `begin()`/`end()` (found via `request.transport.get_protocol()`).
    """

    def __init__(
        self,
        gate: ConnectionGate,
        http1: ProtocolFactory,
        header_timeout: float,
        keepalive_timeout: float,
        http2: ProtocolFactory | None = None,
    ) -> None:
        self._gate = gate
        self._http1 = http1
        self._http2 = http2
        self._inner: asyncio.Protocol | None = None
        self._sniffed = b""
        self._header_timeout = header_timeout
        self._keepalive_timeout = keepalive_timeout
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time the idle or head deadline ends
        self._period = min(header_timeout, keepalive_timeout)  # the timer's longest step
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timed = True  # HTTP/1.1 deadlines; the HTTP/2 engine keeps its own
        self._busy = 0
        self._awaiting_head = False
        self._admitted = False
        # The first bytes of the request head being read: what the parser could not parse
        # is judged from them (a method nobody implements, or garbage), not from the text
        # of the parser's error message.
        self.head_start = b""

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not registered subclasses
        if not self._gate.admit():
            transport.abort()
            return
        self._admitted = True
        self._transport = transport
        if self._http2 is None:
            self._choose(self._http1())
        self._arm(self._keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        if self._timed and not self._busy and not self._awaiting_head:
            self._awaiting_head = True  # first byte of a new head: the head deadline applies
            self._arm(self._header_timeout)
            self.head_start = data[:HEAD_START_BYTES]
        inner = self._inner
        if inner is None:
            inner = self._sniff(data)
            if inner is None:
                return
            data, self._sniffed = self._sniffed, b""
        inner.data_received(data)

    def _sniff(self, data: bytes) -> asyncio.Protocol | None:
        self._sniffed += data
        seen = min(len(self._sniffed), len(HTTP2_PREFACE))
        if self._sniffed[:seen] != HTTP2_PREFACE[:seen]:
            return self._choose(self._http1())
        if len(self._sniffed) < len(HTTP2_PREFACE):
            return None
        assert self._http2 is not None
        self._timed = False
        self._cancel()
        return self._choose(self._http2())

    def _choose(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        assert self._transport is not None
        self._inner = inner
        inner.connection_made(self._transport)
        return inner

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._admitted:
            self._admitted = False
            self._gate.leave()
            if self._inner is not None:
                self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # -- request lifecycle (from the middleware) --------------------------------------
    def begin(self) -> None:
        self._busy += 1
        self._awaiting_head = False
        self._deadline = None  # no deadline while a request is handled

    def end(self) -> None:
        self._busy = max(0, self._busy - 1)
        if not self._busy and self._timed:
            self._arm(self._keepalive_timeout)

    # -- the deadline ----------------------------------------------------------------
    # One timer per connection, rarely moved: each request sets and clears a deadline
    # (a float), and the timer, due at most one check period later, finds out whether the
    # deadline passed; cancelling and creating a timer for every request's head and end was
    # a measurable share of a paid request.
    def _arm(self, seconds: float) -> None:
        if not self._timed:
            self._cancel()
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = self._deadline = now + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(min(deadline, now + self._period), self._expire)

    def _cancel(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._busy or self._transport is None or self._loop is None:
            return  # a request is in progress: its end sets the next deadline
        now = self._loop.time()
        if now < deadline:  # moved on since this timer was set: check again later
            self._timer = self._loop.call_at(min(deadline, now + self._period), self._expire)
            return
        self._transport.abort()


def _method_status(head_start: bytes) -> int:
    """501 for a well-formed method nobody implements, 400 for garbage (TLS, binary):
    judged from the first bytes of the request as the edge received them."""
    method = head_start.split(b" ", 1)[0].decode("latin-1")
    return 501 if method and " " in head_start.decode("latin-1") and set(method) <= TCHARS else 400


def error_status(
    exc: BaseException | None, status: int, head_start: bytes = b""
) -> tuple[int, str, str]:
    """(status, reason code, fixed message) for a request aiohttp could not parse;
    `head_start`: the first bytes of that request, as the edge received them."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == MAX_TARGET_BYTES:
            return 414, "uri_too_long", f"request target longer than {MAX_TARGET_BYTES} bytes"
        return 431, "header_too_large", f"a header is longer than {MAX_HEADER_BYTES} bytes"
    if isinstance(exc, BadHttpMethod):
        code = _method_status(head_start)
        if code == 501:
            return 501, "method_not_implemented", "method not implemented"
        return 400, "bad_request", "not an HTTP/1.1 request"
    if isinstance(exc, HttpProcessingError) or status == 400:
        return 400, "bad_request", "malformed HTTP request"
    return status, "internal_error", "internal error"


class EdgeRequestHandler(RequestHandler):
    """aiohttp's protocol, answering unparsable requests without quoting them anywhere."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        edge = edge_of(self.transport)
        code, reason, text = error_status(exc, status, edge.head_start if edge else b"")
        log.warning(
            "rejected a request that could not be parsed",
            extra={"status": code, "error": type(exc).__name__ if exc else reason},
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing")
        response = web.json_response({"error": reason, "message": text}, status=code)
        response.force_close()
        return response


async def start_listener(
    runner: web.BaseRunner,
    host: str,
    port: int,
    *,
    gate: ConnectionGate,
    header_timeout: float,
    keepalive_timeout: float,
    handler_kwargs: dict[str, Any],
    reuse_port: bool = False,
    http2: ProtocolFactory | None = None,
) -> asyncio.Server:
    """Listen for `runner`'s app behind the edge (a `web.TCPSite` with our protocol).

    `handler_kwargs` are the RequestHandler settings (timeouts, sizes);
    `http2` is the HTTP/2 engine's protocol factory, for connections that open
    with the HTTP/2 preface.
    """
    server = runner.server
    assert server is not None, "runner.setup() first"
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {
        "max_line_size": MAX_TARGET_BYTES,
        "max_field_size": MAX_HEADER_BYTES,
        "access_log": None,  # the request-context middleware writes the access log
    }
    kwargs.update(handler_kwargs)

    def http1() -> asyncio.Protocol:
        return EdgeRequestHandler(server, loop=loop, **kwargs)

    def factory() -> asyncio.Protocol:
        return EdgeProtocol(gate, http1, header_timeout, keepalive_timeout, http2)

    return await loop.create_server(
        factory,
        host,
        port,
        reuse_address=True,
        reuse_port=reuse_port,
        backlog=1024,
    )


def edge_of(transport: asyncio.BaseTransport | None) -> EdgeProtocol | None:
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, EdgeProtocol) else None
