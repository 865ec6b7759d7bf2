"""Per-client token buckets for challenge minting (sans-I/O: the caller passes the time).

Every unauthenticated request to a priced route costs the operator an LND
`AddInvoice` and a stored token, so the gateway limits how fast one client
(one IP address, as resolved through `trusted_proxies`) can obtain challenges.

Each client has a bucket holding up to `burst` tokens, refilled continuously at
`per_minute / 60` tokens per second; a new client starts with a full bucket.
A challenge takes one token. With none left, `allow` answers the seconds until
the next token (the caller turns that into `Retry-After`).

Memory is bounded: at most `max_clients` buckets are kept, least recently used
first out. An evicted client comes back with a full bucket, so eviction (and a
restart, or a reload that disables the limit) can only ever make the limiter
more permissive, never refuse a client that would otherwise have been allowed.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from typing import Protocol

DEFAULT_MAX_CLIENTS = 100_000
# Float slack: refills computed from differences of large epoch timestamps may land a
# hair under a whole token; a millionth of a token is forgiven.
_EPSILON = 1e-6


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class TokenBucketLimiter:
    """`allow(key, now)` -> None (go ahead) or seconds until the key's next token.

    `per_minute == 0` disables the limiter (every call is allowed, nothing is tracked).
    """

    def __init__(
        self, per_minute: int, burst: int, *, max_clients: int = DEFAULT_MAX_CLIENTS
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be >= 1")
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.per_minute = 0
        self.burst = 1
        self.configure(per_minute, burst)

    def configure(self, per_minute: int, burst: int) -> None:
        """Change the limit in place (config reload): known clients keep what they have left,
        capped at the new burst; disabling forgets every client."""
        if per_minute < 0:
            raise ValueError("per_minute must be >= 0")
        if per_minute > 0 and burst < 1:
            raise ValueError("burst must be >= 1")
        self.per_minute = per_minute
        self.burst = max(burst, 1)
        if not self.enabled:
            self._buckets.clear()
            return
        for bucket in self._buckets.values():
            bucket.tokens = min(bucket.tokens, float(self.burst))

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> float | None:
        """Take one token from `key`'s bucket; None when taken, else seconds to wait (> 0)."""
        if not self.enabled:
            return None
        rate = self.per_minute / 60.0  # tokens per second
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            # A clock that went backwards refills nothing (and does not penalise either).
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0 - _EPSILON:
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            return None
        return (1.0 - bucket.tokens) / rate


def retry_after_seconds(wait: float) -> int:
    """A `Retry-After` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait - _EPSILON))


class ChallengeLimiter(Protocol):
    """Where the challenge issuer asks whether a client may have another challenge."""

    async def allow(self, key: str, now: float) -> float | None:
        """None: go ahead (a token was taken); else seconds until the next one."""
        ...

    def configure(self, per_minute: int, burst: int) -> None: ...


class LocalChallengeLimiter:
    """Per-process buckets (the default; see docs/decisions.md for shared ones)."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.buckets = TokenBucketLimiter(per_minute, burst)

    async def allow(self, key: str, now: float) -> float | None:
        return self.buckets.allow(key, now)

    def configure(self, per_minute: int, burst: int) -> None:
        self.buckets.configure(per_minute, burst)


def client_key(address: str, ipv6_prefix: int) -> str:
    """The rate-limit key of a client: IPv4 by address, IPv6 by its `ipv6_prefix` network.

    One IPv6 customer usually holds a whole /64 (or more): keyed per address,
    ten addresses from one /64 got ten times the allowance.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown" and the like share one bucket
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
    return str(parsed)
