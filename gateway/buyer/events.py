"""Reading an event stream (SSE) as it arrives: one `StreamEvent` per dispatched event.

The WHATWG grammar, enough for a buyer: `event:` names the event (default
"message"), `data:` lines are joined by LF, comments and other fields are
skipped, a blank line dispatches. Lines end in CRLF or LF (aiohttp splits lines on
LF; a bare CR ending is not recognised: no seller we know sends one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

MAX_LINE = 1024 * 1024


@dataclass(frozen=True)
class StreamEvent:
    name: str
    data: str


async def read_events(content: aiohttp.StreamReader) -> AsyncIterator[StreamEvent]:
    name, data = "message", list[str]()
    async for raw in content:
        line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
        if len(line) > MAX_LINE:
            raise ValueError("an event-stream line is too long")
        if not line:
            if data:
                yield StreamEvent(name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
