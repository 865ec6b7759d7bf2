"""How much an answer costs, from what was observed: the meter's settle rules in one place.

`read_usage` turns what the answer showed (its tail, its headers) into a
`UsageReading`; `decide_charge` turns the reading, the answer's status and
whether it was read to the end into the units to debit, and says on what
basis. The store then debits at most what the balance holds (see
`gateway.store.balances`): the rules here never need to know the balance.

The rules (docs/metering.md, "Settling"):
- usage reported -> exactly that, whatever the status;
- `requests`: 1 for an answer below 500, else 0;
- `bytes`: the body bytes relayed, abandoned or not;
- no usage and no answer, a 4xx/5xx, or nothing relayed -> 0;
- no usage, a stream the client abandoned (or the upstream cut) after bytes
  were relayed -> the reservation (the request's own ceiling at most);
- no usage on a complete answer (missing, malformed, compressed) -> the estimate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.metering.jsonusage import usage_from_json
from gateway.metering.reading import MAX_USAGE, UsageProblem, UsageReading, UsageSource
from gateway.metering.sse import usage_from_sse
from gateway.metering.tail import TailCollector
from gateway.metering.terms import BYTES, REQUESTS, BundleTerms

_DIGITS = re.compile(r"^[0-9]{1,16}$")


class ChargeBasis(StrEnum):
    USAGE = "usage"  # what the upstream reported
    COUNTED = "counted"  # requests or bytes, counted here
    RESERVATION = "reservation"  # an abandoned stream without usage
    ESTIMATE = "estimate"  # a complete answer without (usable) usage
    NOTHING = "nothing"  # no answer, an error status, or no bytes


@dataclass(frozen=True, slots=True)
class Charge:
    units: int
    basis: ChargeBasis
    problem: UsageProblem | None = None  # why usage was not used, for metrics and logs


def usage_from_header(values: Sequence[str]) -> UsageReading:
    """A usage header: exactly one field, ASCII digits only (surrounding blanks trimmed)."""
    if not values:
        return UsageReading.none(UsageProblem.MISSING)
    if len(values) != 1:
        return UsageReading.none(UsageProblem.MALFORMED)
    text = values[0].strip(" \t")
    if not _DIGITS.match(text) or int(text) > MAX_USAGE:
        return UsageReading.none(UsageProblem.MALFORMED)
    return UsageReading.found(int(text), UsageSource.HEADER)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def usage_from_tail(
    tail: TailCollector, content_type: str | None, content_encoding: str | None = None
) -> UsageReading:
    """Tokens from an answer's tail, by its media type (JSON or an event stream)."""
    if (content_encoding or "identity").strip().lower() != "identity":
        return UsageReading.none(UsageProblem.ENCODED)
    media = _media_type(content_type)
    whole = not tail.truncated
    if media == "text/event-stream":
        return usage_from_sse(tail.tail(), whole=whole)
    if media == "application/json" or media.endswith("+json"):
        return usage_from_json(tail.tail(), whole=whole)
    return UsageReading.none(UsageProblem.UNSUPPORTED_TYPE)


def read_usage(
    terms: BundleTerms,
    *,
    tail: TailCollector | None,
    content_type: str | None,
    content_encoding: str | None,
    header_values: Sequence[str] = (),
) -> UsageReading | None:
    """What the upstream reported, per the route's terms; None for counted units."""
    if terms.counted:
        return None
    if terms.usage_header is not None:
        return usage_from_header(header_values)
    if tail is None:
        return UsageReading.none(UsageProblem.MISSING)
    return usage_from_tail(tail, content_type, content_encoding)


def decide_charge(
    terms: BundleTerms,
    reading: UsageReading | None,
    *,
    status: int | None,
    complete: bool,
    body_bytes: int,
    reserved: int,
    estimate: int,
) -> Charge:
    """The units to debit for one answer (see the module docstring for the rules).

    `status` None = the upstream never answered; `complete` = the body was
    relayed to its end; `reserved` = what the request holds (may be below
    `estimate` when the balance was nearly spent).
    """
    if terms.unit == REQUESTS:
        ok = status is not None and status < 500
        return Charge(1 if ok else 0, ChargeBasis.COUNTED if ok else ChargeBasis.NOTHING)
    if terms.unit == BYTES:
        return Charge(body_bytes, ChargeBasis.COUNTED)
    if reading is not None and reading.units is not None:
        return Charge(reading.units, ChargeBasis.USAGE)
    problem = reading.problem if reading is not None else UsageProblem.MISSING
    if status is None or status >= 400:
        return Charge(0, ChargeBasis.NOTHING, problem)
    if not complete:
        if body_bytes == 0:
            return Charge(0, ChargeBasis.NOTHING, problem)
        return Charge(reserved, ChargeBasis.RESERVATION, problem)
    return Charge(estimate, ChargeBasis.ESTIMATE, problem)
