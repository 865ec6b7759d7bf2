"""Per-client token buckets for challenge minting (the caller passes the time).

Every unauthenticated request to a priced route costs the operator an LND
`AddInvoice` and a stored token, so the gateway limits how fast one client
can obtain challenges. A client is one IPv4 address, or one IPv6 prefix
(default /64: a single subscriber usually gets a whole /64, so keying by full
address gave one host 2^64 allowances), as resolved through `trusted_proxies`
and named by `client_key`.

Two `ChallengeLimiter`s:
- `SharedChallengeLimiter`, what the gateway and the embedded middleware use
  (gateway.paywall.services): one bucket per client in the store, SQLite or
  PostgreSQL, so every worker of `serve --workers N` and every replica on
  the database draws from one allowance (`gateway.store.buckets`). A request
  first reads the bucket; only one that will take a token writes (an atomic
  UPSERT), so a client over its limit costs a read, not a write lock and an
  fsync. If the store fails or is slow it falls back to a local bucket, so
  the limit degrades to per-process, never to none.
- `LocalChallengeLimiter`: buckets in this process's memory, for a store
  that cannot share them (`Store.shares_rate_limits` False) and for tests.

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

import asyncio
import ipaddress
import logging
import math
from collections import OrderedDict
from typing import Protocol

from gateway.store.buckets import SWEEP_BATCH
from gateway.store.roles import RateBuckets
from gateway.store.types import StoreError

log = logging.getLogger("gateway.ratelimit")

DEFAULT_MAX_CLIENTS = 100_000
DEFAULT_IPV6_PREFIX = 64
SHARED_TIMEOUT = 0.5  # a shared bucket slower than this falls back to the local one
SWEEP_INTERVAL = 60.0
SWEEP_ROUNDS = 10  # batches per sweep (gateway.store.buckets.SWEEP_BATCH rows each)
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


def client_key(address: str, v6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The rate-limit key of a client address: IPv4 as is, IPv6 by its `/v6_prefix` network.

    IPv4-mapped IPv6 (`::ffff:192.0.2.1`) counts as the IPv4 address; a zone
    (`fe80::1%eth0`) is ignored. Text that is not an IP address (a UNIX socket
    peer) is its own key. Raises ValueError for a prefix outside 1..128.
    """
    if not 1 <= v6_prefix <= 128:
        raise ValueError(f"IPv6 prefix must be 1..128, got {v6_prefix}")
    text = address.strip()
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    network = ipaddress.IPv6Network((ip, v6_prefix), strict=False)
    return f"{network.network_address}/{v6_prefix}"


class ChallengeLimiter(Protocol):
    """What the challenge issuer asks before minting: None = go ahead, else seconds to wait."""

    @property
    def enabled(self) -> bool: ...

    async def allow(self, key: str, now: float) -> float | None: ...

    def configure(self, per_minute: int, burst: int) -> None:
        """Apply a reloaded limit (see TokenBucketLimiter.configure)."""
        ...


class LocalChallengeLimiter:
    """Per-process buckets (see module docstring)."""

    def __init__(
        self, per_minute: int, burst: int, *, max_clients: int = DEFAULT_MAX_CLIENTS
    ) -> None:
        self.buckets = TokenBucketLimiter(per_minute, burst, max_clients=max_clients)

    @property
    def enabled(self) -> bool:
        return self.buckets.enabled

    async def allow(self, key: str, now: float) -> float | None:
        return self.buckets.allow(key, now)

    def configure(self, per_minute: int, burst: int) -> None:
        self.buckets.configure(per_minute, burst)


class SharedChallengeLimiter:
    """Buckets in the store, shared by every gateway on it (see module docstring).

    Bounded: every `sweep_interval` seconds (by the `now` callers pass) one
    call also deletes buckets that are full again, in at most SWEEP_ROUNDS
    bounded batches, so the table holds about the clients of the last
    burst/rate seconds. The fallback's memory is bounded like the local one's.
    """

    def __init__(
        self,
        store: RateBuckets,
        per_minute: int,
        burst: int,
        *,
        timeout: float = SHARED_TIMEOUT,
        sweep_interval: float = SWEEP_INTERVAL,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self._store = store
        self._timeout = timeout
        self._sweep_interval = sweep_interval
        self._next_sweep = 0.0
        self.fallback = TokenBucketLimiter(per_minute, burst, max_clients=max_clients)
        self.degraded = False
        self._forget = False  # the limit was turned off: forget every client when back on

    @property
    def enabled(self) -> bool:
        return self.fallback.enabled

    def configure(self, per_minute: int, burst: int) -> None:
        if self.fallback.enabled and per_minute == 0:
            self._forget = True
        self.fallback.configure(per_minute, burst)

    async def allow(self, key: str, now: float) -> float | None:
        limit = self.fallback
        if not limit.enabled:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                if self._forget:  # as the local buckets: off, then on, starts every client full
                    await self._store.forget_challenge_buckets()
                    self._forget = False
                # Read first: a client over its limit is refused without a write.
                wait = await self._store.bucket_wait(key, now, limit.per_minute, limit.burst)
                if wait is None:
                    wait = await self._store.take_token(key, now, limit.per_minute, limit.burst)
        except (StoreError, TimeoutError) as exc:
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "shared challenge rate limit unavailable; limiting per process",
                    extra={"error": str(exc) or type(exc).__name__},
                )
            return limit.allow(key, now)
        if self.degraded:
            self.degraded = False
            log.info("shared challenge rate limit available again")
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_interval
            await self.sweep(now)
        return wait

    async def sweep(self, now: float) -> int:
        """Delete buckets that are full again; the number deleted (0 on a store error)."""
        deleted = 0
        try:
            for _ in range(SWEEP_ROUNDS):
                batch = await self._store.sweep_buckets(now)
                deleted += batch
                if batch < SWEEP_BATCH:
                    break
        except StoreError as exc:
            log.warning("rate-limit bucket sweep failed", extra={"error": str(exc)})
        return deleted
