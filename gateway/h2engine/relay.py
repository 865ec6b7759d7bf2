"""One client stream, start to end: admission, then refuse or forward, then the accounting.

A relay runs as one task per client stream. Forwarding runs two pumps: the
response pump in the relay's task (upstream headers, DATA, trailers to the
client) and the request pump in a child task (client DATA and END_STREAM
upstream). Both move bytes as they come and acknowledge a peer's DATA only
after handing it on, so flow control carries the slowest side's pace back to
the fastest: nothing is buffered beyond one window.

Everything that can end a stream early (client RST_STREAM or disconnect, the
grpc-timeout deadline, shutdown, an upstream failure) goes through `abort`,
which records the first reason and cancels the task, except while the server's
own coroutines run (`decide`, `answered`, `failed`): those are never
interrupted by the client, so a lease is never left half-done; the reason is
acted on as soon as they return. `_finish` then answers the client, resets
the upstream, and reports to the ticket in the documented order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from gateway.h2engine import grpcwire
from gateway.h2engine.api import FailReason, Forward, Refuse, StreamHead, StreamOutcome, Ticket
from gateway.h2engine.channel import Channel
from gateway.h2engine.ends import ERRORS, ClientEnd, Done, End, EngineEnd
from gateway.h2engine.errors import (
    CANCEL,
    INTERNAL_ERROR,
    NO_ERROR,
    BadHeaders,
    ConnectionGone,
    H2EngineError,
    StreamIdle,
    StreamReset,
    UpstreamUnavailable,
)
from gateway.h2engine.grpcwire import GrpcStatus
from gateway.h2engine.headers import decode_request, encode, first, passthrough, upstream_request

if TYPE_CHECKING:
    from gateway.h2engine.server import ServerConnection

log = logging.getLogger("gateway.h2")
T = TypeVar("T")


_INLINE_REQUEST = 16 * 1024  # below HTTP/2's initial window: sending it never waits


def _where(exc: BaseException) -> dict[str, str]:
    """Exception type and innermost frame, never its message: a parser's and the server's
    messages can quote header values, which may be credentials."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return {"error": type(exc).__name__, "where": where}


class _Aborted(Exception):
    """Raised after a server callback returns when an abort arrived while it ran."""


class StreamRelay:
    def __init__(self, server: ServerConnection, client: Channel, raw: list[tuple[bytes, bytes]]):
        self.server = server
        self.client = client
        self.raw = raw
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.task: asyncio.Task[None] | None = None
        self.grpc = False
        self.ticket: Ticket | None = None
        self.up: Channel | None = None
        self.answered = False  # Ticket.answered was called (the upstream answered)
        self.client_headers_sent = False
        self.status: int | None = None
        self.grpc_status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._end: End | None = None
        self._reset_code = CANCEL  # the upstream's RST code, forwarded after its headers
        self._critical = 0
        self._running = False
        self._finishing = False
        self._request_task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.task = self.loop.create_task(self.run())

    def abort(self, end: End) -> None:
        """End the stream early for `end` (first reason wins)."""
        if self._end is not None:
            return
        self._end = end
        task = self.task
        if self._running and not self._critical and not self._finishing and task is not None:
            task.cancel()

    def _stop(self, end: End) -> None:
        if self._end is None:
            self._end = end

    async def run(self) -> None:
        self._running = True
        try:
            if self._end is None:
                await self._serve()
        except asyncio.CancelledError:
            if self._end is None:
                raise  # cancelled from outside the engine (event loop shutdown)
            if self.task is not None:
                self.task.uncancel()
        except _Aborted:
            pass
        except Exception as exc:  # a bug must not leave the client or the ticket hanging
            log.error("HTTP/2 relay failed", extra=_where(exc))
            self._stop(FailReason.INTERNAL if self.ticket else EngineEnd.ADMISSION_FAILED)
        self._finishing = True
        await self._finish()

    # ---- the stream ----

    async def _serve(self) -> None:
        head = decode_request(self.raw, self.server.peer)
        self.grpc = head.is_grpc
        if head.method == "CONNECT":
            await self._answer_plain(405, b"CONNECT is not supported\n")
            self._stop(Done.REFUSED)
            return
        remaining = self._arm_deadline(head)
        if self._end is not None:
            await self._answer_error(GrpcStatus.INTERNAL, 400, "malformed grpc-timeout")
            return
        decision = await self._admit(head)
        if isinstance(decision, Forward):
            self.ticket = decision.ticket
        self._check_aborted()
        if isinstance(decision, Refuse):
            await self._refuse(decision)
            self._stop(Done.REFUSED)
            return
        try:
            remaining = None if remaining is None else remaining - (self.loop.time() - self.started)
            headers = upstream_request(head, decision, remaining=remaining)
        except BadHeaders as exc:
            log.error("cannot forward: %s", exc)
            self._stop(FailReason.INTERNAL)
            return
        try:
            self.up = await self.server.proxy.pool.open_stream(
                decision.target, headers, end_stream=self.client.at_end
            )
            if self.up.local_closed:
                pass  # the request headers carried END_STREAM: no body
            elif self.client.ended and self.client.buffered <= _INLINE_REQUEST:
                # The whole (small) request is here and fits any window: send it now,
                # in this task, instead of starting a request pump (most unary calls).
                await self._pump_request()
            else:
                self._request_task = self.loop.create_task(self._pump_request())
                self._request_task.add_done_callback(self._request_done)
            await self._pump_response()
            self._stop(Done.OK)
        except UpstreamUnavailable as exc:
            self._stop(exc.reason)
        except StreamReset as exc:
            if exc.side == "client":
                self._stop(ClientEnd.RESET)
            else:
                self._reset_code = exc.code
                self._stop(FailReason.UPSTREAM_RESET)
        except ConnectionGone as exc:
            self._stop(ClientEnd.GONE if exc.side == "client" else FailReason.UPSTREAM_CLOSED)
        except StreamIdle as exc:
            self._stop(ClientEnd.IDLE if exc.side == "client" else FailReason.UPSTREAM_IDLE)

    def _arm_deadline(self, head: StreamHead) -> float | None:
        """The client's grpc-timeout as seconds, with a timer that aborts the stream then."""
        if not self.grpc:
            return None
        values = head.values("grpc-timeout")
        if not values:
            return None
        try:
            seconds = grpcwire.parse_timeout(values[0])
        except ValueError:
            self._stop(Done.REFUSED)
            return None
        self._deadline = self.loop.call_at(self.started + seconds, self.abort, FailReason.DEADLINE)
        return seconds

    async def _pump_request(self) -> None:
        client, up = self.client, self.up
        assert up is not None
        while (item := await client.read()) is not None:
            data, size = item
            last = client.at_end and client.trailers is None
            await up.send_data(data, end_stream=last)
            client.ack(size)
            self.bytes_in += len(data)
            if last:
                return
        if client.trailers is not None:
            up.send_headers(passthrough(client.trailers), end_stream=True)
        else:
            await up.send_data(b"", end_stream=True)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, StreamReset | ConnectionGone) and exc.side == "upstream":
            return  # the response pump sees the same and decides (an early answer is fine)
        if isinstance(exc, StreamReset):
            self.abort(ClientEnd.RESET)
        elif isinstance(exc, ConnectionGone):
            self.abort(ClientEnd.GONE)
        elif isinstance(exc, StreamIdle):
            self.abort(ClientEnd.IDLE if exc.side == "client" else FailReason.UPSTREAM_IDLE)
        else:
            log.error("HTTP/2 request pump failed", extra=_where(exc))
            self.abort(FailReason.INTERNAL)

    async def _pump_response(self) -> None:
        client, up, ticket = self.client, self.up, self.ticket
        assert up is not None
        assert ticket is not None
        headers = await up.response_headers()
        trailers_only = up.at_end and up.trailers is None
        status_text = first(headers, b":status") or b""
        self.status = int(status_text) if status_text.isdigit() else 0
        if trailers_only:
            self.grpc_status = grpcwire.status_of(headers)
        self.answered = True
        await self._notify(ticket.answered(self.status, self.grpc_status), "answered")
        self._check_aborted()
        client.send_headers(passthrough(headers), end_stream=trailers_only)
        self.client_headers_sent = True
        if trailers_only:
            return
        while (item := await up.read()) is not None:
            data, size = item
            last = up.at_end and up.trailers is None
            await client.send_data(data, end_stream=last)
            up.ack(size)
            self.bytes_out += len(data)
            if last:
                return
        if up.trailers is not None:
            self.grpc_status = grpcwire.status_of(up.trailers)
            client.send_headers(passthrough(up.trailers), end_stream=True)
        else:
            await client.send_data(b"", end_stream=True)

    # ---- server callbacks: bounded, never cancelled by the client ----

    async def _bounded(self, coro: Awaitable[T]) -> T:
        """Await a server callback; past `callback_timeout` it is cancelled (TimeoutError).

        A plain timer that cancels this task, instead of asyncio.timeout: the
        same effect at a third of the cost, twice per call.
        """
        task = self.task
        assert task is not None
        fired = False

        def overdue() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        timer = self.loop.call_later(self.limits.callback_timeout, overdue)
        try:
            result = await coro
            if fired:  # the callback swallowed its cancellation: do not leave it pending
                task.uncancel()
            return result
        except asyncio.CancelledError:
            if fired:
                task.uncancel()
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()

    async def _admit(self, head: StreamHead) -> Refuse | Forward:
        self._critical += 1
        try:
            return await self._bounded(self.server.proxy.admission.decide(head))
        except TimeoutError:
            log.error("Admission.decide outlived callback_timeout")
            self._stop(EngineEnd.ADMISSION_TIMEOUT)
            raise _Aborted from None
        except Exception as exc:
            log.error("Admission.decide failed", extra=_where(exc))
            self._stop(EngineEnd.ADMISSION_FAILED)
            raise _Aborted from None
        finally:
            self._critical -= 1

    async def _notify(self, coro: Awaitable[None], what: str) -> None:
        """Await a Ticket callback; its failure is logged, the stream goes on."""
        self._critical += 1
        try:
            await self._bounded(coro)
        except TimeoutError:
            log.error("Ticket.%s outlived callback_timeout", what)
        except Exception as exc:
            log.error("Ticket.%s failed", what, extra=_where(exc))
        finally:
            self._critical -= 1

    def _check_aborted(self) -> None:
        if self._end is not None:
            raise _Aborted

    # ---- answers made by the engine ----

    async def _refuse(self, refuse: Refuse) -> None:
        try:
            extra = passthrough(encode(refuse.headers))
        except BadHeaders as exc:
            log.error("cannot send the refusal: %s", exc)
            await self._answer_error(GrpcStatus.INTERNAL, 500, "internal gateway error")
            return
        if self.grpc and refuse.grpc_status is not None:
            block = grpcwire.trailers_only(refuse.grpc_status, refuse.grpc_message, extra)
            self._send_final(block)
            self.grpc_status = refuse.grpc_status
            return
        await self._answer_plain(refuse.status, refuse.body, extra)

    async def _answer_plain(
        self, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        block = [(b":status", str(status).encode("ascii")), *(extra or [])]
        if not any(name == b"content-length" for name, _ in block):
            block.append((b"content-length", str(len(body)).encode("ascii")))
        with contextlib.suppress(H2EngineError):
            self.client.send_headers(block, end_stream=not body)
            self.client_headers_sent = True
            if body:
                await self.client.send_data(body, end_stream=True)

    def _send_final(self, block: list[tuple[bytes, bytes]]) -> None:
        with contextlib.suppress(H2EngineError):
            self.client.send_headers(block, end_stream=True)
            self.client_headers_sent = True

    async def _answer_error(self, grpc_status: int, http_status: int, message: str) -> None:
        """Tell the client the engine ended the stream, however far the response got."""
        client = self.client
        if client.local_closed:
            return
        if self.grpc:
            self.grpc_status = grpc_status
            if self.client_headers_sent:
                block = grpcwire.status_trailers(grpc_status, message)
            else:
                block = grpcwire.trailers_only(grpc_status, message)
            self._send_final(block)
        elif not self.client_headers_sent:
            body = (message + "\n").encode("utf-8")
            await self._answer_plain(http_status, body, [(b"content-type", b"text/plain")])
        else:
            client.reset(INTERNAL_ERROR)  # a truncated plain HTTP body cannot say why

    # ---- the end ----

    async def _finish(self) -> None:
        end = self._end or FailReason.INTERNAL
        if self._deadline is not None:
            self._deadline.cancel()
        if self._request_task is not None and not self._request_task.done():
            self._request_task.cancel()
        client, up = self.client, self.up
        try:
            if up is not None and end is not Done.OK:
                up.reset(CANCEL)
            if isinstance(end, ClientEnd):
                client.reset(CANCEL)
            elif isinstance(end, FailReason | EngineEnd):
                if self.ticket is not None and not self.answered and isinstance(end, FailReason):
                    await self._notify(self.ticket.failed(end), "failed")
                if end is FailReason.UPSTREAM_RESET and self.client_headers_sent:
                    client.reset(self._reset_code if self._reset_code != NO_ERROR else CANCEL)
                else:
                    await self._answer_error(*ERRORS[end])
            if not client.ended:
                client.reset(NO_ERROR)  # answered in full before the request was: RFC 9113 8.1
        except Exception as exc:
            log.error("HTTP/2 relay cleanup failed", extra=_where(exc))
        finally:
            if self._request_task is not None:
                await asyncio.wait([self._request_task])
            if up is not None:
                up.endpoint.release(up)
            self.server.relay_done(self)
            self._report(end)

    def _report(self, end: End) -> None:
        if self.ticket is None:
            return
        outcome = StreamOutcome(
            status=self.status if self.answered else None,
            grpc_status=self.grpc_status,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            cancelled_by_client=isinstance(end, ClientEnd),
            error=None if end is Done.OK else str(end),
            duration=self.loop.time() - self.started,
        )
        try:
            self.ticket.finished(outcome)
        except Exception as exc:
            log.error("Ticket.finished failed", extra=_where(exc))
