"""What some routes must read of a request before deciding: its query and a bounded body prefix.

Most routes decide on the request's head alone, and their bodies stream to
the upstream untouched. Two kinds need more, before the request is admitted:

- a `bundle:` of tokens estimates a request by its `max_tokens`, read from
  the body (at most `ESTIMATE_BODY_LIMIT` + 1 bytes, and only once the
  credential is verified: an unpaid body is never read for it);
- an Aperture pricer (`pricing: {grpc: ...}`) is sent the request text: the
  request line, the headers (credentials dropped) and at most 64 KiB of the
  body, at challenge time as well as for every paid request.

The transport supplies `RequestDetails`: the raw query string, and `prefix`,
which reads the body up to a limit *and keeps what it read*, so the transport
forwards that prefix and then the rest (nothing is read twice or lost).
`RequestView` is the paywall's view of one request built on it; it is passed
along only where needed, so the common path reads nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.config.model import GrpcPricing, Route
from gateway.pricer.wire import PRICER_BODY_LIMIT, PricedRequest, priced_request


class RequestDetails(Protocol):
    @property
    def query(self) -> str:
        """The raw query string (without `?`), "" when there is none."""
        ...

    async def prefix(self, limit: int) -> tuple[bytes, bool]:
        """The body's first bytes (at most `limit`) and whether that is the whole body.

        Reads only what it has not read yet; what it read is kept and forwarded
        first. A body that cannot be read (the client stopped sending) raises
        the transport's own refusal (408, 413, 400)."""
        ...


NO_DETAILS_PREFIX = (b"", False)  # no transport support: the body is unknown


def needs_details(route: Route) -> bool:
    """Whether deciding on `route` may read the request's query or body."""
    return route.metered or isinstance(route.pricing, GrpcPricing)


@dataclass(slots=True)
class RequestView:
    """One request as a pricer or a meter sees it; the request text is built once."""

    method: str
    path: str  # the normal form, as priced and forwarded
    headers: Sequence[tuple[str, str]]
    details: RequestDetails | None
    _priced: PricedRequest | None = field(default=None, repr=False)

    async def body_prefix(self, limit: int) -> tuple[bytes, bool]:
        """(bytes, whole body) or (b"", False) when the transport cannot show the body."""
        if self.details is None:
            return NO_DETAILS_PREFIX
        return await self.details.prefix(limit)

    async def priced(self) -> PricedRequest:
        """Aperture's `http_request_text` for this request (gateway.pricer.wire)."""
        if self._priced is None:
            body, _ = await self.body_prefix(PRICER_BODY_LIMIT)
            query = self.details.query if self.details is not None else ""
            self._priced = priced_request(self.method, self.path, query, self.headers, body)
        return self._priced
