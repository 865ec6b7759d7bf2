"""An ASGI `receive` wrapper that can tell, before a paid answer starts, whether the client left.

ASGI servers do not cancel the app when the client disconnects (aiohttp
can); they queue an `http.disconnect` message that the app sees only if it
calls `receive()` again. A single-use token must not be consumed for an
answer nobody can receive, so at `http.response.start` the middleware asks
`client_gone()`:

- a disconnect the app already received: gone;
- otherwise, once the request body is known to be over (the app read its last
  chunk, or the request declared none), it polls `receive()` without waiting:
  one turn of the event loop lets the server hand over a message it already
  has (a closed connection's `http.disconnect`), and a `receive()` that would
  wait is cancelled. Anything polled is kept and handed to the app's next
  `receive()`, so the app loses nothing;
- never while the app itself waits in `receive()` (it will get the message),
  and never while body chunks are unread (polling would read the body): then
  the answer counts as delivered, as it would behind the proxy once started.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


def declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A body may follow (Content-Length other than 0, any Transfer-Encoding, or Expect)."""
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length" and value.strip() != b"0":
            return True
        if lower in (b"transfer-encoding", b"expect"):
            return True
    return False


class Inbox:
    def __init__(self, receive: Receive, headers: list[tuple[bytes, bytes]]) -> None:
        self._receive = receive
        self._kept: deque[Message] = deque()
        self._waiting = 0  # receive() calls of the app in progress
        self._body_over = not declares_body(headers)
        self.disconnected = False
        self._peeked = bytearray()  # body bytes read ahead (kept in `_kept` for the app)

    async def peek_body(self, limit: int) -> tuple[bytes, bool]:
        """The body's first bytes (at most `limit`) and whether that is all of it, read
        before the app runs (a metered route's estimate). Every message read is kept and
        handed to the app's `receive()` as it came, so the app reads the same body."""
        while not self._body_over and not self.disconnected and len(self._peeked) < limit:
            message = await self._receive()
            self._kept.append(message)
            self._note(message)
            if message.get("type") == "http.request":
                self._peeked += message.get("body", b"")
        whole = self._body_over and len(self._peeked) <= limit
        return bytes(self._peeked[:limit]), whole

    async def receive(self) -> Message:
        """The app's `receive`: kept messages first, then the server's."""
        if self._kept:
            return self._kept.popleft()
        self._waiting += 1
        try:
            message = await self._receive()
        finally:
            self._waiting -= 1
        self._note(message)
        return message

    def _note(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("http.disconnect", "websocket.disconnect"):
            self.disconnected = True
        elif kind == "http.request" and not message.get("more_body", False):
            self._body_over = True

    async def client_gone(self) -> bool:
        """True when the client has gone; False when it has not, or cannot be told."""
        if self.disconnected:
            return True
        if self._waiting or self._kept or not self._body_over:
            return False
        for _ in range(2):  # an unread empty body first, then a disconnect
            message = await self._poll()
            if message is None:
                return False
            self._kept.append(message)
            self._note(message)
            if self.disconnected or message.get("more_body", False):
                break
        return self.disconnected

    async def _poll(self) -> Message | None:
        """A message the server already holds, or None (never waits for one)."""
        task = asyncio.ensure_future(self._receive())
        await asyncio.sleep(0)  # the task runs first: it returns at once or waits
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait([task])
        return None if task.cancelled() else task.result()
