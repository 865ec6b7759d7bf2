"""A route's bundle terms: what one payment buys, and how each answer is counted.

routes.yaml (parsed by the config loader, checked here so the rules live
once beside the meter):

    bundle:
      units: 1000000          # what one payment credits (> 0)
      unit: tokens            # tokens | requests | bytes | a name of your own
      price_sats: 2000        # or price_msats
      estimate: 4096          # reserved per request when the body names no max_tokens
      estimate_from: max_tokens   # or `none` (tokens only)
      usage_header: X-Usage   # read usage from this response header instead of the body
      tail_bytes: 16384       # bytes of each answer kept to find its usage

- `tokens`: an OpenAI-compatible `usage` (JSON body or the SSE stream's last
  usage chunk), or `usage_header`.
- `requests`: one per answer below 500; never reads the answer.
- `bytes`: the response body bytes relayed; never reads the answer.
- any other name (`images`, `credits`, ...): `usage_header` is required.

Units are integers; a session's deposit uses the unit `msat` (not allowed
in routes.yaml: it is the session's own).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.metering.tail import DEFAULT_TAIL_BYTES, MAX_TAIL_BYTES

TOKENS = "tokens"
REQUESTS = "requests"
BYTES = "bytes"
MSAT = "msat"  # a Payment-scheme session's deposit (the balance store is unit-agnostic)

DEFAULT_TOKEN_ESTIMATE = 4096  # Aperture meterd's `estimatedtokens` default
MAX_UNITS = 2**62  # integers both databases hold, with room to add
_UNIT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # also an RFC 8941 token (balance header)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_KEYS = frozenset(
    {"units", "unit", "price_sats", "price_msats", "estimate", "estimate_from"}
    | {"usage_header", "tail_bytes"}
)


class TermsError(ValueError):
    """A bundle setting is wrong; `field` names it (relative to `bundle`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"bundle.{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class BundleTerms:
    units: int
    unit: str
    price_msat: int
    estimate: int  # reserved per request when nothing better is known
    estimate_from_body: bool  # tokens: the body's max_tokens / max_completion_tokens
    usage_header: str | None  # lower-case; None = read the body (tokens) or count
    tail_bytes: int

    @property
    def reads_tail(self) -> bool:
        """Whether answers must be observed through a tail (tokens from the body)."""
        return self.unit == TOKENS and self.usage_header is None

    @property
    def counted(self) -> bool:
        """Requests and bytes are counted by the gateway, never reported by the upstream."""
        return self.unit in (REQUESTS, BYTES)


def _int(raw: Mapping[str, object], key: str, low: int, high: int) -> int | None:
    if key not in raw or raw[key] is None:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TermsError(key, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise TermsError(key, f"must be between {low} and {high}, got {value}")
    return value


def parse_bundle(raw: Mapping[str, object]) -> BundleTerms:
    """Check a route's `bundle` mapping; TermsError names the first wrong field."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise TermsError(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    units = _int(raw, "units", 1, MAX_UNITS)
    if units is None:
        raise TermsError("units", "required")
    unit = raw.get("unit")
    if not isinstance(unit, str) or not _UNIT_NAME.match(unit):
        raise TermsError("unit", "must be tokens, requests, bytes or a lower-case name")
    if unit == MSAT:
        raise TermsError("unit", "msat is a session's unit, not a bundle's")
    sats = _int(raw, "price_sats", 1, MAX_UNITS // 1000)
    msats = _int(raw, "price_msats", 1, MAX_UNITS)
    if (sats is None) == (msats is None):
        raise TermsError("price_sats", "give exactly one of price_sats and price_msats")
    price_msat = msats if msats is not None else int(sats or 0) * 1000

    header = raw.get("usage_header")
    if header is not None and (not isinstance(header, str) or not _HEADER_NAME.match(header)):
        raise TermsError("usage_header", "must be an HTTP header name")
    if header is not None and unit in (REQUESTS, BYTES):
        raise TermsError("usage_header", f"the gateway counts {unit} itself")
    if header is None and unit not in (TOKENS, REQUESTS, BYTES):
        raise TermsError("usage_header", f"required for a unit of your own ({unit})")

    estimate = _int(raw, "estimate", 1, MAX_UNITS)
    if unit == REQUESTS:
        if estimate not in (None, 1):
            raise TermsError("estimate", "a request costs exactly 1")
        estimate = 1
    elif estimate is None:
        if unit != TOKENS:
            raise TermsError("estimate", f"required for unit {unit}")
        estimate = DEFAULT_TOKEN_ESTIMATE

    source = raw.get("estimate_from", "max_tokens" if unit == TOKENS else "none")
    if source not in ("max_tokens", "none"):
        raise TermsError("estimate_from", "must be max_tokens or none")
    if source == "max_tokens" and unit != TOKENS:
        raise TermsError("estimate_from", "max_tokens estimates tokens only")

    tail = _int(raw, "tail_bytes", 256, MAX_TAIL_BYTES)
    return BundleTerms(
        units=units,
        unit=unit,
        price_msat=price_msat,
        estimate=estimate,
        estimate_from_body=source == "max_tokens",
        usage_header=header.lower() if header is not None else None,
        tail_bytes=DEFAULT_TAIL_BYTES if tail is None else tail,
    )
