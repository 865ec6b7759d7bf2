"""What a price source is asked at challenge time, and what it answers (no I/O here).

A route with `pricing:` takes its price from the operator's pricing service
while its 402 challenge is being minted (gateway.pricer: the HTTP hook, and
Aperture's gRPC pricer). The challenge issuer depends only on the `Pricer`
role below: a price source never raises, it falls back to the route's
fallback price and says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from gateway.config.model import PricingHook

MAX_HEADER_VALUE = 1024  # characters of one header's value sent to a price source


class Fallback(StrEnum):
    """Why a challenge used the fallback price (the metric's closed `reason` set)."""

    TIMEOUT = "timeout"
    ERROR = "error"  # connection refused or reset, DNS, TLS, or anything unexpected
    STATUS = "status"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class PriceQuery:
    """What the hook learns about the request being challenged."""

    route: str
    method: str
    path: str  # the normalised path, as matched and forwarded; never the query
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
        }


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one challenge: the hook's, or the fallback with the reason."""

    msat: int
    fallback: Fallback | None = None


def hook_headers(
    headers: Iterable[tuple[str, str]], names: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """The request's values of the configured header names (lower-case), in that order.

    Repeated fields are joined with ", " (RFC 9110 §5.3) and each value is cut
    at MAX_HEADER_VALUE characters, so the hook's request stays bounded.
    """
    if not names:
        return ()
    wanted = set(names)
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            found.setdefault(lowered, []).append(value)
    return tuple(
        (name, ", ".join(found[name])[:MAX_HEADER_VALUE]) for name in names if name in found
    )


class Pricer(Protocol):
    """A price source for routes with `pricing:`."""

    async def price(self, hook: PricingHook, query: PriceQuery) -> Price:
        """The price of one challenge; never raises (falls back to `hook.fallback_msat`)."""
        ...

    async def close(self) -> None: ...
