"""Credential verification with a bounded in-memory cache of verified credentials.

A repeat request with a credential verified moments ago costs one SHA-256 and
a dict lookup: no store round trip and no HMAC chain. Entries live at most
`ttl` seconds so a `l402-gateway revoke` run by another process takes effect
within that time (SIGHUP clears the cache at once).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.model import Route
from gateway.l402 import verify as l402_verify
from gateway.l402.credentials import Credential
from gateway.l402.errors import L402Error, Reason
from gateway.l402.verify import VerifiedToken
from gateway.server.errors import StoreUnavailable
from gateway.store.base import StoreError, TokenStore


@dataclass(frozen=True, slots=True)
class _Entry:
    token: VerifiedToken
    cached_until: float  # monotonic deadline of this cache entry


class VerifiedCache:
    """LRU of credential digests → verified tokens; holds no macaroon or preimage."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(credential: Credential, route: str) -> bytes:
        h = hashlib.sha256(route.encode())
        h.update(b"\0")
        h.update(credential.macaroon.raw)
        h.update(credential.preimage)
        return h.digest()

    def get(self, key: bytes) -> VerifiedToken | None:
        entry = self._entries.get(key)
        if entry is None or entry.cached_until < self._clock():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.token

    def put(self, key: bytes, token: VerifiedToken) -> None:
        if self.size <= 0:
            return
        self._entries[key] = _Entry(token, self._clock() + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def discard(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Authenticator:
    """Verifies credentials for a route: cache, then preimage, then root key, then HMAC."""

    def __init__(
        self,
        store: TokenStore,
        cache: VerifiedCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.cache = cache
        self._clock = clock

    async def authenticate(self, credential: Credential, route: Route) -> VerifiedToken:
        now = int(self._clock())
        key = VerifiedCache.key(credential, route.name)
        token = self.cache.get(key)
        if token is not None:
            if token.valid_until is not None and now > token.valid_until:
                self.cache.discard(key)
                raise L402Error(Reason.EXPIRED, "token has expired")
            return token
        identifier = l402_verify.precheck(credential)  # wrong preimage: refused with no I/O
        try:
            root_key = await self._store.get_root_key(identifier.key_id)
        except StoreError as exc:
            raise StoreUnavailable(f"token store unavailable: {exc}") from exc
        token = l402_verify.verify(credential, root_key, route.name, route.required_capability, now)
        self.cache.put(key, token)
        return token
