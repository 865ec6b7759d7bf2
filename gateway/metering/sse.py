"""Server-sent events read back from the bounded tail of a stream.

The grammar is the WHATWG event-stream format: lines end in CRLF, LF or CR;
a blank line dispatches the event built so far; `data:` lines (one optional
space after the colon) append to the event's data, joined by LF; lines
starting with `:` are comments; an event not yet dispatched when the stream
ends is discarded, as a browser would.

A tail cut at the front may start in the middle of an event, even in the
middle of a line: every field read before the first blank line may belong to
an event whose earlier lines are gone, so `events` skips it. When the tail is
the whole stream, nothing is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from gateway.metering.reading import UsageProblem, UsageReading, UsageSource, count_tokens

_LINE_END = re.compile(rb"\r\n|\r|\n")
DONE = "[DONE]"  # the OpenAI stream's end marker (not JSON)


def events(tail: bytes, *, whole: bool) -> Iterator[str]:
    """The data of each complete event in `tail`, oldest first (events without data skipped).

    `whole` = the tail starts at the stream's first byte.
    """
    lines = _LINE_END.split(tail)
    # The last piece is not terminated: a partial line, never part of a dispatched event.
    lines.pop()
    start = 0
    if not whole:
        # The first piece may be the end of a line (or the LF of a CRLF cut in
        # two, which would look like a blank line): never trust it. Then skip
        # to the first real event boundary.
        try:
            start = lines.index(b"", 1) + 1
        except ValueError:
            return
    data: list[bytes] = []
    has_data = False
    for line in lines[start:]:
        if not line:
            if has_data:
                yield b"\n".join(data).decode("utf-8", errors="replace")
            data, has_data = [], False
            continue
        if line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
            has_data = True


def usage_from_sse(tail: bytes, *, whole: bool) -> UsageReading:
    """Tokens from the last event whose JSON data carries a non-null `usage` object.

    Events that are not JSON objects (`[DONE]`, comments, other payloads) are
    skipped; a `usage` of null (every content chunk of an OpenAI stream with
    `include_usage`) is skipped. If the last usage-bearing event's object is
    malformed, the reading is malformed: an earlier, smaller count is not
    taken instead.
    """
    # Newest first: only events after the last usage-bearing one are parsed.
    for data in reversed(list(events(tail, whole=whole))):
        if data == DONE:
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            continue
        if isinstance(payload, dict) and payload.get("usage") is not None:
            counted = count_tokens(payload["usage"])
            if isinstance(counted, UsageProblem):
                return UsageReading.none(counted)
            return UsageReading.found(counted, UsageSource.SSE)
    return UsageReading.none(UsageProblem.MISSING)
