"""The meter's sans-I/O core (standard library only): usage, estimates, limits, freebies.

Prepaid bundles are metered by what the upstream reports. This package holds
every rule that needs no socket and no database, as pure functions of what
the caller observed (and of the time, passed in):

- `tail`: the bounded tail of an answer (`TailCollector`);
- `sse`, `jsonusage`, `reading`: usage read from that tail or a header;
- `estimate`: what a request reserves (its `max_tokens`, else the route's estimate);
- `charge`: how much an answer costs, and on what basis;
- `terms`: a route's `bundle:` settings; `balanceheader`: the `L402-Balance` header;
- `limits`: per-credential rate limits; `freebies`: free requests per client per period.

The balances themselves live in the store (`gateway.store.roles.Balances`);
docs/metering.md tells how a request goes through them.
"""

from gateway.metering.balanceheader import (
    BALANCE_HEADER,
    BalanceReport,
    format_balance,
    parse_balance,
)
from gateway.metering.charge import (
    Charge,
    ChargeBasis,
    decide_charge,
    read_usage,
    usage_from_header,
    usage_from_tail,
)
from gateway.metering.estimate import (
    ESTIMATE_BODY_LIMIT,
    Estimate,
    EstimateProblem,
    EstimateSource,
    estimate_request,
)
from gateway.metering.freebies import FreebiePolicy, FreebiesError, parse_freebies
from gateway.metering.limits import (
    LimitsError,
    LocalRateLimiter,
    RateRule,
    bucket_key,
    client_subject,
    credential_subject,
    parse_rate_rules,
    retry_after,
)
from gateway.metering.reading import UsageProblem, UsageReading, UsageSource
from gateway.metering.tail import DEFAULT_TAIL_BYTES, MAX_TAIL_BYTES, TailCollector
from gateway.metering.terms import (
    BYTES,
    MSAT,
    REQUESTS,
    TOKENS,
    BundleTerms,
    TermsError,
    parse_bundle,
)

__all__ = [
    "BALANCE_HEADER",
    "BYTES",
    "DEFAULT_TAIL_BYTES",
    "ESTIMATE_BODY_LIMIT",
    "MAX_TAIL_BYTES",
    "MSAT",
    "REQUESTS",
    "TOKENS",
    "BalanceReport",
    "BundleTerms",
    "Charge",
    "ChargeBasis",
    "Estimate",
    "EstimateProblem",
    "EstimateSource",
    "FreebiePolicy",
    "FreebiesError",
    "LimitsError",
    "LocalRateLimiter",
    "RateRule",
    "TailCollector",
    "TermsError",
    "UsageProblem",
    "UsageReading",
    "UsageSource",
    "bucket_key",
    "client_subject",
    "credential_subject",
    "decide_charge",
    "estimate_request",
    "format_balance",
    "parse_balance",
    "parse_bundle",
    "parse_freebies",
    "parse_rate_rules",
    "read_usage",
    "retry_after",
    "usage_from_header",
    "usage_from_tail",
]
