"""Whole SSE events out of a byte stream, for per-event session billing (sans-I/O).

A session answer that streams (`text/event-stream`) is billed per event as it
flows (draft-lightning-session, "Streaming and Per-Chunk Billing"), and the
seller may have to pause between two events to ask for a top-up. So the
stream is cut at event boundaries (a blank line: two line ends, where a line
end is CRLF, LF or CR, as the WHATWG grammar reads them): `feed` returns the
complete events, terminator included, and keeps the start of the next one.
A CR at the very end of what was fed may be the first half of a CRLF: it
decides nothing until the next byte. An event longer than `limit` is let
through whole as it is (never held without bound), unbilled as one event.
"""

from __future__ import annotations

import re

_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_DATA = re.compile(rb"(?:^|[\r\n])data:[ ]?([^\r\n]*)")
DONE = b"[DONE]"
DEFAULT_LIMIT = 256 * 1024


class EventSplitter:
    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._buffer = b""
        self._limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events completed by `chunk` (each with its blank-line terminator)."""
        buffer = self._buffer + chunk
        searchable = buffer[:-1] if buffer.endswith(b"\r") else buffer
        events: list[bytes] = []
        start = 0
        for match in _BLANK_LINE.finditer(searchable):
            events.append(buffer[start : match.end()])
            start = match.end()
        rest = buffer[start:]
        if len(rest) > self._limit:  # no boundary in sight: pass it on rather than hold it
            events.append(rest)
            rest = b""
        self._buffer = rest
        return events

    def rest(self) -> bytes:
        """What is held back (an unterminated event) when the stream ends."""
        rest, self._buffer = self._buffer, b""
        return rest


def billable(event: bytes) -> bool:
    """An event that delivers data: has a `data:` line, and is not the `[DONE]` marker."""
    values = _DATA.findall(event)
    return bool(values) and values != [DONE]


def is_done(event: bytes) -> bool:
    """The OpenAI-style end marker (`data: [DONE]`)."""
    return _DATA.findall(event) == [DONE]


def is_event_stream(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"
