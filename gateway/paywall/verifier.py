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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from gateway.config.model import Route
from gateway.l402 import credentials
from gateway.l402 import verify as l402_verify
from gateway.l402.errors import L402Error, Reason
from gateway.l402.grammar import CREDENTIAL_HEADERS
from gateway.l402.verify import VerifiedToken
from gateway.paywall.refusals import StoreUnavailable
from gateway.store.roles import RootKeys
from gateway.store.types import StoreError


def credential_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request headers that can carry an L402 credential, in order."""
    return [(name, value) for name, value in headers if name.lower() in CREDENTIAL_HEADERS]


@dataclass(frozen=True, slots=True)
class Admission:
    """A verified credential and the one Authorization value to forward upstream."""

    token: VerifiedToken
    authorization: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Entry:
    admission: Admission
    cached_until: float  # monotonic deadline of this cache entry


class VerifiedCache:
    """LRU of credential-header digests -> admissions; keyed by digest, not by the secret.

    Keying on the raw header values (not the parsed credential) lets a repeat
    request skip base64, macaroon and preimage parsing as well as the HMAC.
    """

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(route: str, headers: Sequence[tuple[str, str]]) -> bytes:
        h = hashlib.sha256(route.encode())
        for name, value in headers:
            h.update(
                b"\0" + name.lower().encode() + b"\0" + value.encode("utf-8", "surrogateescape")
            )
        return h.digest()

    def get(self, key: bytes) -> Admission | None:
        entry = self._entries.get(key)
        if entry is None or entry.cached_until < self._clock():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.admission

    def put(self, key: bytes, admission: Admission) -> None:
        if self.size <= 0:
            return
        self._entries[key] = _Entry(admission, self._clock() + self.ttl)
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
    """Admits credentials for a route: cache, then parse, preimage, root key, HMAC, caveats."""

    def __init__(
        self,
        keys: RootKeys,
        cache: VerifiedCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self.cache = cache
        self._clock = clock

    async def admit(self, headers: Sequence[tuple[str, str]], route: Route) -> Admission | None:
        """None when the headers carry no L402 credential at all (the caller challenges)."""
        if not headers:
            return None
        now = int(self._clock())
        key = VerifiedCache.key(route.name, headers)
        admission = self.cache.get(key)
        if admission is not None:
            valid_until = admission.token.valid_until
            if valid_until is not None and now > valid_until:
                self.cache.discard(key)
                raise L402Error(Reason.EXPIRED, "token has expired")
            return admission
        credential = credentials.parse(headers)
        if credential is None:
            return None
        identifier = l402_verify.precheck(credential)  # wrong preimage: refused with no I/O
        try:
            root_key = await self._keys.get_root_key(identifier.key_id)
        except StoreError as exc:
            raise StoreUnavailable(f"token store unavailable: {exc}") from exc
        token = l402_verify.verify(
            credential,
            root_key,
            route.service,
            route.required_capability,
            now,
            prechecked=identifier,
        )
        admission = Admission(token, credential.authorization)
        self.cache.put(key, admission)
        return admission
