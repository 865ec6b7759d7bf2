"""Spend policy: decide, before any money moves, whether a quote may be paid.

Order of checks (first failure wins), and why:

1. `host_blocked`, 2. `host_not_allowlisted` -- host checks come first, as in
   the EP212 harness: a host we will not deal with is refused whatever its
   invoice says, and the client runs them (`check_host`) before it even
   decodes the challenge.
3. `amount_unknown` -- never pay an amount-less invoice (the old harness paid
   those "at the cap").
4. `invoice_mismatch` -- the invoice's payment hash is not the macaroon's, the
   challenge advertised a different amount, or the network is not ours: paying
   would buy nothing usable, or pay on the wrong chain.
5. `invoice_expired`.
6. `amount_over_cap` -- quote > min(run cap, per-request cap); for a Payment
   session deposit, `deposit_over_cap` -- deposit > the deposit cap
   (`max_deposit_msats`, else the same cap as a price).
7. `budget_exhausted` -- spent so far + quote > budget (deposits count in full:
   a refund is not promised money).

`SpendPolicy` is mutable only through `record_spend`, which the client calls
after a successful payment.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.buyer.invoice import Quote


class DenyReason(StrEnum):
    """Why a payment was refused before paying (stable codes for agents and summaries)."""

    HOST_BLOCKED = "host_blocked"
    HOST_NOT_ALLOWLISTED = "host_not_allowlisted"
    AMOUNT_UNKNOWN = "amount_unknown"
    INVOICE_MISMATCH = "invoice_mismatch"
    INVOICE_EXPIRED = "invoice_expired"
    AMOUNT_OVER_CAP = "amount_over_cap"
    DEPOSIT_OVER_CAP = "deposit_over_cap"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DENIED_BY_USER = "denied_by_user"


@dataclass(frozen=True)
class Decision:
    """The policy's answer; `reason_code` is None exactly when `allowed`."""

    allowed: bool
    reason_code: DenyReason | None
    host: str
    amount_msats: int | None
    cap_msats: int
    detail: str = ""
    budget_remaining_msats: int | None = None


def normalize_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _host_matches(host: str, pattern: str) -> bool:
    """Exact match, or `*.example.com` for any subdomain (not the apex)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@dataclass
class SpendPolicy:
    """Caps and host lists for one buyer run. All amounts in millisatoshis."""

    max_spend_msats: int
    per_request_cap_msats: int | None = None
    budget_msats: int | None = None
    allowed_hosts: Iterable[str] | None = None
    blocked_hosts: Iterable[str] = ()
    expected_network: str | None = None
    max_deposit_msats: int | None = None  # Payment session deposits; None: cap_msats
    spent_msats: int = field(default=0)
    _allowed: frozenset[str] | None = field(init=False, repr=False, default=None)
    _blocked: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        if self.max_spend_msats < 0:
            raise ValueError("max_spend_msats must not be negative")
        if self.max_deposit_msats is not None and self.max_deposit_msats < 0:
            raise ValueError("max_deposit_msats must not be negative")
        self._allowed = (
            None
            if self.allowed_hosts is None
            else frozenset(normalize_host(h) for h in self.allowed_hosts)
        )
        self._blocked = frozenset(normalize_host(h) for h in self.blocked_hosts)

    @property
    def cap_msats(self) -> int:
        """The most a single payment may cost: min(run cap, per-request cap)."""
        if self.per_request_cap_msats is None:
            return self.max_spend_msats
        return min(self.max_spend_msats, self.per_request_cap_msats)

    @property
    def deposit_cap_msats(self) -> int:
        """The most a session deposit (open or top-up) may cost."""
        return self.cap_msats if self.max_deposit_msats is None else self.max_deposit_msats

    @property
    def budget_remaining_msats(self) -> int | None:
        if self.budget_msats is None:
            return None
        return max(0, self.budget_msats - self.spent_msats)

    def _deny(self, reason: DenyReason, host: str, amount: int | None, detail: str) -> Decision:
        return Decision(
            False, reason, host, amount, self.cap_msats, detail, self.budget_remaining_msats
        )

    def check_host(self, host: str, amount_msats: int | None = None) -> Decision:
        """Host checks only (steps 1-2); the client runs these before decoding anything."""
        host = normalize_host(host)
        if any(_host_matches(host, p) for p in self._blocked):
            return self._deny(DenyReason.HOST_BLOCKED, host, amount_msats, "host is blocked")
        if self._allowed is not None and not any(_host_matches(host, p) for p in self._allowed):
            return self._deny(
                DenyReason.HOST_NOT_ALLOWLISTED, host, amount_msats, "host is not allowlisted"
            )
        return Decision(
            True, None, host, amount_msats, self.cap_msats, "", self.budget_remaining_msats
        )

    def evaluate(
        self, host: str, quote: Quote, now: float | None = None, *, deposit: bool = False
    ) -> Decision:
        """Every check, in the documented order (`deposit`: a session deposit's cap)."""
        now = time.time() if now is None else now
        amount = quote.amount_msats
        decision = self.check_host(host, amount)
        if not decision.allowed:
            return decision
        host = decision.host
        if amount is None:
            return self._deny(DenyReason.AMOUNT_UNKNOWN, host, None, "invoice carries no amount")
        if not quote.hash_matches:
            return self._deny(
                DenyReason.INVOICE_MISMATCH, host, amount, "invoice hash is not the macaroon's"
            )
        if not quote.advertised_amount_matches:
            return self._deny(
                DenyReason.INVOICE_MISMATCH,
                host,
                amount,
                f"challenge advertised {quote.advertised_amount_msats} msat, invoice is {amount}",
            )
        network = quote.invoice.network
        if self.expected_network is not None and network != self.expected_network:
            return self._deny(
                DenyReason.INVOICE_MISMATCH,
                host,
                amount,
                f"invoice is for network {network!r}, expected {self.expected_network!r}",
            )
        if quote.invoice.is_expired(now):
            return self._deny(DenyReason.INVOICE_EXPIRED, host, amount, "invoice has expired")
        cap = self.deposit_cap_msats if deposit else self.cap_msats
        if amount > cap:
            reason = DenyReason.DEPOSIT_OVER_CAP if deposit else DenyReason.AMOUNT_OVER_CAP
            what = "deposit" if deposit else "quote"
            return Decision(
                False, reason, host, amount, cap,
                f"{what} {amount} msat exceeds cap {cap} msat", self.budget_remaining_msats,
            )  # fmt: skip
        if self.budget_msats is not None and self.spent_msats + amount > self.budget_msats:
            return self._deny(
                DenyReason.BUDGET_EXHAUSTED,
                host,
                amount,
                f"spent {self.spent_msats} + {amount} msat exceeds budget {self.budget_msats}",
            )
        return Decision(True, None, host, amount, cap, "", self.budget_remaining_msats)

    def record_spend(self, amount_msats: int) -> None:
        """Count a completed payment against the budget."""
        self.spent_msats += amount_msats
