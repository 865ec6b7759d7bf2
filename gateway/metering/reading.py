"""What a response said about its usage: a count, or the reason there is none.

Every extractor answers a `UsageReading`. A reading without units carries a
closed `UsageProblem` code, so the caller can count why answers settled at
their estimate (a metric label) without logging the answer itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

# JSON numbers above 2**53 lose precision in most parsers: a usage count that
# large is a broken upstream, not a real answer.
MAX_USAGE = 2**53


_DECODER = json.JSONDecoder()


def load_json(body: bytes) -> object:
    """`json.loads(body)`, without its encoding detection for the usual document (a request
    or an answer read once per metered request): one that starts with `{` and then a
    byte other than NUL is UTF-8 by that detection too, so it is decoded as json.loads
    would. Raises what json.loads raises."""
    if body[:1] == b"{" and body[1:2] != b"\x00":
        return _DECODER.decode(body.decode("utf-8", "surrogatepass"))
    return json.loads(body)


class UsageSource(StrEnum):
    JSON = "json"  # the whole JSON body held in the tail
    JSON_TAIL = "json_tail"  # the last `usage` object of a body cut at the front
    SSE = "sse"  # the last usage-bearing event of a stream
    HEADER = "header"  # a response header the operator named
    COUNTED = "counted"  # counted by the gateway (requests, bytes)


class UsageProblem(StrEnum):
    MISSING = "missing"  # no usage object / header at all
    MALFORMED = "malformed"  # a usage object or header that is not what the grammar says
    ENCODED = "encoded"  # a compressed body: the tail is not plaintext
    UNSUPPORTED_TYPE = "unsupported_type"  # neither JSON nor an event stream


@dataclass(frozen=True, slots=True)
class UsageReading:
    """`units` when the answer reported usage; else `problem` says why not."""

    units: int | None
    source: UsageSource | None = None
    problem: UsageProblem | None = None

    @classmethod
    def found(cls, units: int, source: UsageSource) -> UsageReading:
        return cls(units, source, None)

    @classmethod
    def none(cls, problem: UsageProblem) -> UsageReading:
        return cls(None, None, problem)

    @property
    def ok(self) -> bool:
        return self.units is not None


def strict_count(value: object) -> int | None:
    """A JSON usage count: an integer 0..MAX_USAGE (never a bool, float or string)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_USAGE else None


def count_tokens(usage: object) -> int | UsageProblem:
    """The tokens an OpenAI-compatible `usage` object reports, or why it reports none.

    `prompt_tokens + completion_tokens` when both are present (what the buyer
    sent plus what the model produced: both are billed, as Aperture's meter
    does), else `total_tokens`. A present but ill-typed, fractional or
    negative count makes the object malformed; so does an object with none of
    the three.
    """
    if not isinstance(usage, dict):
        return UsageProblem.MALFORMED
    counts: dict[str, int] = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if name in usage and usage[name] is not None:
            count = strict_count(usage[name])
            if count is None:
                return UsageProblem.MALFORMED
            counts[name] = count
    if "prompt_tokens" in counts and "completion_tokens" in counts:
        return counts["prompt_tokens"] + counts["completion_tokens"]
    if "total_tokens" in counts:
        return counts["total_tokens"]
    return UsageProblem.MALFORMED
