"""What the pricer calls answer, as plain values (no protobuf past gateway.pricer.client)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Authorization:
    """AuthorizeRequest's answer. Refused: `price_sats` is the next purchase (0 = ask GetPrice)."""

    allowed: bool
    price_sats: int = 0
    reason: str = ""
    reserved_estimate: int = 0  # echo it in UsageReport.reserved_estimate


@dataclass(frozen=True, slots=True)
class UsageReport:
    """ReportUsage's request: what the answer to an authorized request showed."""

    token_id: str  # hex
    path: str
    service_name: str
    http_status: int
    content_type: str
    complete: bool  # False: the body was not relayed to its end
    response_tail: bytes = field(repr=False)  # the last bytes of the body (may hold content)
    content_encoding: str = ""
    reserved_estimate: int = 0


@dataclass(frozen=True, slots=True)
class UsageDebit:
    """ReportUsage's answer (informational, in satoshis)."""

    debited_sats: int
    remaining_sats: int
