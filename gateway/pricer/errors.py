"""Typed pricer errors, so the request path maps failures without parsing strings.

Messages carry the method and the gRPC status name and details, never the
serialized request (it may hold a buyer's prompt). No gRPC here: the paywall
imports these types without loading a transport (gateway.pricer.client maps
gRPC statuses onto them).
"""

from __future__ import annotations


class PricerError(Exception):
    """Any failed pricer call; `code` is the gRPC status name (or `invalid_answer`)."""

    def __init__(self, method: str, code: str, message: str) -> None:
        super().__init__(f"pricer {method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class PricerUnavailable(PricerError):
    """Down, unreachable, or no answer within the deadline: retry later, or fall back."""


class PricerRefused(PricerError):
    """The pricer rejected the request itself (INVALID_ARGUMENT and the like): a retry
    with the same request fails the same way."""


class PricerInvalidAnswer(PricerError):
    """The pricer answered something the protocol does not allow (a negative price)."""


class NoPrice(Exception):
    """A metered pricer could not quote or book a bundle: the challenge must not be sent
    (the paywall answers 503, PricerDown; docs/metering.md, "Pricer down")."""
