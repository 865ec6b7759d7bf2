"""Per-credential rate limits and freebies over the store: the async side of gateway.metering.

`gateway.metering.limits` and `.freebies` decide; this module asks the store
(or this process's memory) and degrades safely when the store fails:

- `SharedRequestLimiter` (PostgreSQL: every replica draws from one bucket per
  credential and rule) falls back to per-process buckets when the store fails
  or is slower than `timeout`, as the challenge limiter does: the limit
  degrades to per process, never to none. `LocalRequestLimiter` is the
  per-process kind (SQLite: a write per paid request is the wrong price for
  sharing a limit between processes of one host).
- `FreebieCounter` fails closed: when the store cannot count, no freebie is
  granted (the buyer gets the 402 and may pay), so an outage never gives the
  API away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.metering.freebies import FreebiePolicy
from gateway.metering.limits import LocalRateLimiter, RateRule, bucket_key
from gateway.store.roles import Allowances, RequestLimits
from gateway.store.types import StoreError

log = logging.getLogger("gateway.quotas")

SHARED_TIMEOUT = 0.5


class RequestLimiter(Protocol):
    async def check(
        self, route: str, rules: Sequence[RateRule], path: str, subject: str, now: float
    ) -> float | None:
        """None = go ahead (a token taken from every matching rule), else seconds to wait."""
        ...


class LocalRequestLimiter:
    def __init__(self, max_buckets: int | None = None) -> None:
        self.buckets = LocalRateLimiter() if max_buckets is None else LocalRateLimiter(max_buckets)

    async def check(
        self, route: str, rules: Sequence[RateRule], path: str, subject: str, now: float
    ) -> float | None:
        return self.buckets.check(route, rules, path, subject, now)


class SharedRequestLimiter:
    """Buckets in the store (see module docstring); `degraded` while on the fallback."""

    def __init__(self, store: RequestLimits, *, timeout: float = SHARED_TIMEOUT) -> None:
        self._store = store
        self._timeout = timeout
        self.fallback = LocalRateLimiter()
        self.degraded = False

    async def check(
        self, route: str, rules: Sequence[RateRule], path: str, subject: str, now: float
    ) -> float | None:
        matching = [r for r in rules if r.matches(path)]
        if not matching:
            return None
        keys = [bucket_key(route, r, subject) for r in matching]
        try:
            async with asyncio.timeout(self._timeout):
                wait = await self._store.take_request_tokens(keys, matching, now)
        except (StoreError, TimeoutError) as exc:
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "shared request rate limits unavailable; limiting per process",
                    extra={"error": str(exc) or type(exc).__name__},
                )
            return self.fallback.check(route, matching, path, subject, now)
        if self.degraded:
            self.degraded = False
            log.info("shared request rate limits available again")
        return wait


@dataclass(frozen=True, slots=True)
class FreebieGrant:
    """One freebie taken; give it back with `FreebieCounter.give_back` if the upstream failed."""

    key: str
    period: int
    used: int  # this client's count in the period, this one included
    limit: int


class FreebieCounter:
    def __init__(self, store: Allowances) -> None:
        self._store = store

    async def take(
        self, route: str, policy: FreebiePolicy, address: str, now: float
    ) -> FreebieGrant | None:
        """A freebie for this client now, or None (none left, or the store failed: no freebie)."""
        key = policy.key(route, address)
        period = policy.period(now)
        try:
            used = await self._store.take_allowance(
                key, period, policy.per_client, expires_at=policy.period_end(now)
            )
        except StoreError as exc:
            log.warning(
                "freebie counter unavailable; no freebie granted", extra={"error": str(exc)}
            )
            return None
        return None if used is None else FreebieGrant(key, period, used, policy.per_client)

    async def give_back(self, grant: FreebieGrant) -> bool:
        try:
            return await self._store.return_allowance(grant.key, grant.period)
        except StoreError as exc:
            log.warning("freebie not given back", extra={"error": str(exc)})
            return False
