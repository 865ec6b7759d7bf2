"""The `usage` object of a JSON answer (OpenAI-compatible chat or completion).

When the tail holds the whole body, the body is parsed as one JSON document
and its top-level `usage` member is read: nothing else counts.

When the body was longer than the tail, the document cannot be parsed, so
the last `"usage"` key standing where an object member name can stand
(after `{` or `,`, or at the very front of the tail) and followed by a
colon is taken, and the JSON value after its colon is decoded.
That is sound on a valid document: a quote inside a string value is always
escaped, so `"usage"` preceded by `{` or `,` can only be a member name, and
text a buyer made the model write cannot forge one.
"""

from __future__ import annotations

import json

from gateway.metering.reading import (
    UsageProblem,
    UsageReading,
    UsageSource,
    count_tokens,
    load_json,
)

_KEY = b'"usage"'
_SPACE = b" \t\r\n"
_decoder = json.JSONDecoder()


def usage_from_json(tail: bytes, *, whole: bool) -> UsageReading:
    if whole:
        return _whole(tail)
    return _cut(tail)


def _reading(usage: object) -> UsageReading:
    counted = count_tokens(usage)
    if isinstance(counted, UsageProblem):
        return UsageReading.none(counted)
    return UsageReading.found(counted, UsageSource.JSON)


def _whole(body: bytes) -> UsageReading:
    try:
        document = load_json(body)
    except ValueError:
        return UsageReading.none(UsageProblem.MALFORMED)
    if not isinstance(document, dict) or document.get("usage") is None:
        return UsageReading.none(UsageProblem.MISSING)
    return _reading(document["usage"])


def _cut(tail: bytes) -> UsageReading:
    end = len(tail)
    while (at := tail.rfind(_KEY, 0, end)) >= 0:
        end = at
        before = tail[:at].rstrip(_SPACE)
        if before and before[-1:] not in (b"{", b","):
            continue  # not a member name (a key at the very front is taken)
        rest = tail[at + len(_KEY) :].lstrip(_SPACE)
        if not rest.startswith(b":"):
            continue
        text = rest[1:].lstrip(_SPACE).decode("utf-8", errors="replace")
        try:
            value, _ = _decoder.raw_decode(text)
        except ValueError:
            return UsageReading.none(UsageProblem.MALFORMED)
        if value is None:
            return UsageReading.none(UsageProblem.MISSING)
        reading = _reading(value)
        if reading.units is None:
            return reading
        return UsageReading.found(reading.units, UsageSource.JSON_TAIL)
    return UsageReading.none(UsageProblem.MISSING)
