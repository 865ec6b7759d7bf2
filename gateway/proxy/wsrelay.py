"""Relaying one WebSocket session: messages both ways, close codes passed on, every wait bounded.

Each direction is one loop: receive a message, send it on, repeat. A send
waits for the socket once 64 KiB are pending, and the loop does not read
again until the send is done, so a slow reader pauses the other side's reads
(aiohttp stops reading a socket whose queue holds 128 KiB) instead of growing
a buffer: a session holds at most about two messages and a few hundred KiB
per direction, whatever the peers do.

- Messages: text and binary, whole (aiohttp reassembles fragments, bounded by
  `max_message_bytes`; fragment boundaries are not kept). Text is checked as
  UTF-8 on the way in.
- Pings and pongs are relayed end to end (autoping is off on both hops): the
  client's ping is answered by the upstream, so its pong proves the whole path.
- Close: the side that closes first has its code and reason passed on, and
  gets its own code back (RFC 6455 §5.5.1): the upstream at once, the client
  once the upstream has answered (or the close deadline passed). A side that
  fails (no
  close frame, a protocol error, a message over the limit, a send that cannot
  complete) ends the session: the client is told 1014 (bad gateway) or 1009
  (the upstream's message was too big), the upstream is told 1001 (going away).
- Idle: no message in either direction for `idle_timeout_seconds` closes both
  sides with 1001. A send stuck on a reader that never reads counts as idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from gateway.proxy.websocket import RelayLimits, sendable

_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


class Side(StrEnum):
    CLIENT = "client"
    UPSTREAM = "upstream"


class Ending(StrEnum):
    """How a session ended (the access log's outcome, as `websocket_<ending>`)."""

    CLIENT_CLOSED = "client_closed"
    UPSTREAM_CLOSED = "upstream_closed"
    CLIENT_FAILED = "client_failed"
    UPSTREAM_FAILED = "upstream_failed"
    IDLE_TIMEOUT = "idle_timeout"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class _Stop:
    """Why a direction stopped: a close frame from `source`, or `source` failed."""

    source: Side
    closed: bool
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Summary:
    """What happened, for the access log (codes and counts only: no payloads, no reasons)."""

    ending: Ending
    sent_to_client: int | None  # the close code the gateway sent the client
    sent_to_upstream: int | None
    messages_up: int
    messages_down: int


Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class Relay:
    """Runs one session between an accepted client socket and a connected upstream socket."""

    def __init__(
        self,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        limits: RelayLimits,
    ) -> None:
        self._sockets: dict[Side, Socket] = {Side.CLIENT: client, Side.UPSTREAM: upstream}
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._stopping = asyncio.Event()
        self._relayed = {Side.CLIENT: 0, Side.UPSTREAM: 0}
        self._sent: dict[Side, int | None] = {Side.CLIENT: None, Side.UPSTREAM: None}
        self._for_client: tuple[int, str] = (WSCloseCode.GOING_AWAY, "")

    def stop(self) -> None:
        """Ask the session to close both sides with 1001 (the gateway is shutting down)."""
        self._stopping.set()

    async def run(self) -> Summary:
        """Relay until one side closes or fails, the session idles out, or `stop()`.

        Returns with the upstream side closed; the client's close is left to
        `close_client()`.
        """
        pumps = [asyncio.create_task(self._pump(side)) for side in Side]
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            first = await self._first_stop(pumps, stopper)
            ending = await self._finish(first)
        finally:
            for task in (*pumps, stopper):
                task.cancel()
            await asyncio.gather(*pumps, stopper, return_exceptions=True)
        return Summary(
            ending,
            None if self._sockets[Side.CLIENT].closed else self._for_client[0],
            self._sent[Side.UPSTREAM],
            self._relayed[Side.CLIENT],
            self._relayed[Side.UPSTREAM],
        )

    async def _first_stop(
        self, pumps: list[asyncio.Task[_Stop]], stopper: asyncio.Task[bool]
    ) -> _Stop | Ending:
        idle = self._limits.idle_timeout_seconds
        while True:
            remaining = self._last_activity + idle - self._loop.time()
            if remaining <= 0:
                return Ending.IDLE_TIMEOUT
            done, _ = await asyncio.wait(
                [*pumps, stopper], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if stopper in done:
                return Ending.SHUTDOWN
            for task in pumps:
                if task in done:
                    return task.result()

    async def _pump(self, source: Side) -> _Stop:
        """Relay messages from `source` to the other side until something else arrives."""
        target = _other(source)
        src, dst = self._sockets[source], self._sockets[target]
        while True:
            msg = await src.receive()
            kind = msg.type
            try:
                if kind is WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif kind is WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif kind is WSMsgType.PING:
                    await dst.ping(msg.data)
                elif kind is WSMsgType.PONG:
                    await dst.pong(msg.data)
                elif kind is WSMsgType.CLOSE:
                    return _Stop(source, True, msg.data, msg.extra or "")
                else:  # CLOSED, ERROR (aiohttp has closed `src`), or CLOSING
                    return _Stop(source, False, src.close_code, "")
            except ConnectionError:  # `dst` is gone (aiohttp's reset errors subclass it)
                return _Stop(target, False, WSCloseCode.ABNORMAL_CLOSURE, "")
            self._relayed[source] += 1
            self._last_activity = self._loop.time()

    async def _finish(self, first: _Stop | Ending) -> Ending:
        """Close the upstream side and choose the client's close (sent by `close_client`)."""
        if isinstance(first, Ending):
            reason = "idle timeout" if first is Ending.IDLE_TIMEOUT else "gateway shutting down"
            await self._close(Side.UPSTREAM, WSCloseCode.GOING_AWAY, reason)
            self._for_client = (WSCloseCode.GOING_AWAY, reason)
            return first
        if first.closed:
            code = sendable(first.code, fallback=WSCloseCode.INTERNAL_ERROR)
            if first.source is Side.CLIENT:
                # Pass it on, wait (bounded) for the upstream's answer, then answer the client.
                await self._close(Side.UPSTREAM, code, first.reason)
                self._for_client = (code, "")
                return Ending.CLIENT_CLOSED
            await self._close(Side.UPSTREAM, code, "")  # answer the upstream at once
            self._for_client = (code, first.reason)
            return Ending.UPSTREAM_CLOSED
        if first.source is Side.UPSTREAM:
            await self._close(Side.UPSTREAM, WSCloseCode.GOING_AWAY, "")  # usually closed already
            if first.code == WSCloseCode.MESSAGE_TOO_BIG:
                self._for_client = (WSCloseCode.MESSAGE_TOO_BIG, "upstream message too big")
            else:
                self._for_client = (WSCloseCode.BAD_GATEWAY, "upstream connection failed")
            return Ending.UPSTREAM_FAILED
        await self._close(Side.UPSTREAM, WSCloseCode.GOING_AWAY, "client went away")
        self._for_client = (WSCloseCode.GOING_AWAY, "")
        return Ending.CLIENT_FAILED

    async def close_client(self) -> None:
        """Send the client the close `run()` chose; call it last.

        Closing the client's socket ends its connection, and aiohttp then
        cancels the handler at its next wait (handler_cancellation), so
        nothing may be left to do after this.
        """
        code, reason = self._for_client
        await self._close(Side.CLIENT, code, reason)

    async def _close(self, side: Side, code: int, reason: str) -> None:
        """Close one side within the close deadline; a side already closed is left alone."""
        ws = self._sockets[side]
        if ws.closed:
            return
        self._sent[side] = code
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._limits.close_timeout_seconds):
                await ws.close(code=code, message=_reason_bytes(reason))


def _reason_bytes(reason: str) -> bytes:
    """The reason as UTF-8, cut to what a close frame holds without splitting a character."""
    raw = reason.encode()
    if len(raw) <= _REASON_BYTES:
        return raw
    return raw[:_REASON_BYTES].decode(errors="ignore").encode()


def _other(side: Side) -> Side:
    return Side.UPSTREAM if side is Side.CLIENT else Side.CLIENT
