"""What a request reserves before it is forwarded: its own ceiling, or the route's estimate.

An OpenAI-compatible request names the most it may generate (`max_tokens`,
or its newer alias `max_completion_tokens`; the larger wins when both are
given, as Aperture's meter does). Reserving that ceiling is what keeps
concurrent requests from spending the same last tokens twice.

The body is read only up to ESTIMATE_BODY_LIMIT (1 MiB): the gateway must hold
what it reads until the upstream takes it, so the bound is per request in
flight. A body larger than that, a body that is not one JSON object, or a
ceiling that is not a positive integer reserves the route's `estimate`
instead; the answer still settles at its real usage, so a wrong guess only
moves the reservation, never the bill. (A prompt's own tokens are not in the
ceiling: an answer may exceed its reservation, see docs/metering.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.metering.reading import load_json, strict_count
from gateway.metering.terms import BundleTerms

ESTIMATE_BODY_LIMIT = 1024 * 1024
_FIELDS = ("max_tokens", "max_completion_tokens")


class EstimateSource(StrEnum):
    BODY = "body"  # the request's max_tokens / max_completion_tokens
    DEFAULT = "default"  # the route's `estimate`


class EstimateProblem(StrEnum):
    NO_BODY = "no_body"
    TOO_LARGE = "too_large"  # longer than ESTIMATE_BODY_LIMIT: not parsed
    NOT_JSON = "not_json"
    NO_CEILING = "no_ceiling"  # JSON, but neither field is there
    BAD_CEILING = "bad_ceiling"  # a field that is not a positive integer


@dataclass(frozen=True, slots=True)
class Estimate:
    units: int
    source: EstimateSource
    problem: EstimateProblem | None = None


def estimate_request(terms: BundleTerms, body: bytes | None, *, complete: bool) -> Estimate:
    """The units to reserve for a request whose body (or its first bytes) is `body`.

    `complete` = `body` is the whole body. Pass at most ESTIMATE_BODY_LIMIT
    bytes; a longer or incomplete body falls back to the route's estimate.
    """
    default = terms.estimate
    if not terms.estimate_from_body:
        return Estimate(default, EstimateSource.DEFAULT)
    if not body:
        return Estimate(default, EstimateSource.DEFAULT, EstimateProblem.NO_BODY)
    if not complete or len(body) > ESTIMATE_BODY_LIMIT:
        return Estimate(default, EstimateSource.DEFAULT, EstimateProblem.TOO_LARGE)
    try:
        document = load_json(body)
    except (ValueError, RecursionError):
        return Estimate(default, EstimateSource.DEFAULT, EstimateProblem.NOT_JSON)
    if not isinstance(document, dict):
        return Estimate(default, EstimateSource.DEFAULT, EstimateProblem.NOT_JSON)
    ceilings: list[int] = []
    for name in _FIELDS:
        if document.get(name) is None:
            continue
        value = strict_count(document[name])
        if value is None or value == 0:
            return Estimate(default, EstimateSource.DEFAULT, EstimateProblem.BAD_CEILING)
        ceilings.append(value)
    if not ceilings:
        return Estimate(default, EstimateSource.DEFAULT, EstimateProblem.NO_CEILING)
    return Estimate(max(ceilings), EstimateSource.BODY)
