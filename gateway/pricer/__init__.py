"""Aperture's pricer protocol (`pricesrpc.Prices`), client side.

A route may leave its price, and for metered services its balances, to an
external pricer, as Aperture's `dynamicprice` does: `GetPrice` before a 402,
`ChallengeMinted` as it is minted, `AuthorizeRequest` per paid request and
`ReportUsage` with the answer's tail (docs/metering.md, "Aperture's pricer
protocol"). `Pricer` is the role; `GrpcPricer` the gRPC client; `wire` builds
the request text the calls carry (credentials never included).
"""

from gateway.pricer.client import DEFAULT_TIMEOUT, REPORT_TIMEOUT, GrpcPricer, Pricer
from gateway.pricer.errors import (
    PricerError,
    PricerInvalidAnswer,
    PricerRefused,
    PricerUnavailable,
)
from gateway.pricer.types import Authorization, UsageDebit, UsageReport
from gateway.pricer.wire import PRICER_BODY_LIMIT, PricedRequest, priced_request, request_text

__all__ = [
    "DEFAULT_TIMEOUT",
    "PRICER_BODY_LIMIT",
    "REPORT_TIMEOUT",
    "Authorization",
    "GrpcPricer",
    "PricedRequest",
    "Pricer",
    "PricerError",
    "PricerInvalidAnswer",
    "PricerRefused",
    "PricerUnavailable",
    "UsageDebit",
    "UsageReport",
    "priced_request",
    "request_text",
]
