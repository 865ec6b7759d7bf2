"""Credential cache: pay once, reuse the token while the seller accepts it.

Keyed by host + scope (the route path unless the caller names a scope). An
entry's life: `store` -> HIT until its expiry -> STALE; `invalidate` (the
seller refused it with 401/402) -> INVALID until a new `store`.

A cached credential is a bearer secret (macaroon + preimage). The optional
JSON file is handled by `gateway.buyer.cachefile`: created 0600, replaced
atomically, refused when others could read it, and written under a file lock
by read-merge-write, so several buyers (processes) can share one file: each
write re-reads the file and applies only this cache's own changes since its
last write, never dropping another buyer's credential. When two buyers stored
a credential for the same key, the one obtained later wins; an `invalidate`
only marks the very credential that was refused (not a newer one another
buyer stored meanwhile). Lookups use what was read at construction plus this
cache's own changes (and whatever the last write merged in): no file I/O on
the event loop.

A cache given a path checks at construction (before any payment) that the file
can be written there, and raises `CacheError("cache_unusable")` if not. After
that, a failed write never loses a credential: the entry is kept in memory
(and retried by the next write) and the failure is returned (`store_async` /
`invalidate_async`, used by the client, which writes the file in a worker
thread) or raised as `CacheError("cache_persist_failed")` (the blocking
`store` / `invalidate`).

The table is bounded (`max_entries`, default 1000 host/scope pairs): beyond
it, refused entries go first, then expired ones, then the oldest.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.buyer.cachefile import (
    DEFAULT_LOCK_TIMEOUT,
    check_writable,
    exclusive_lock,
    read_private,
    write_private_atomic,
)
from gateway.buyer.errors import CacheError
from gateway.l402.credentials import format_authorization

__all__ = ["CacheStatus", "Credential", "CredentialCache", "write_private_atomic"]

_FILE_VERSION = 1
DEFAULT_MAX_ENTRIES = 1000


class CacheStatus(StrEnum):
    MISS = "miss"
    HIT = "hit"
    STALE = "stale"
    INVALID = "invalid"


@dataclass(frozen=True)
class Credential:
    """A paid token. `macaroon` and `preimage_hex` are secrets (hidden from repr)."""

    macaroon: str = field(repr=False)
    preimage_hex: str = field(repr=False)
    obtained_at: float
    expires_at: float | None

    def authorization(self) -> str:
        """The header value sellers expect: `L402 <b64 macaroon>:<hex preimage>`."""
        return format_authorization(self.macaroon, self.preimage_hex)


@dataclass(frozen=True)
class _Entry:
    credential: Credential
    invalid: bool = False


_Key = tuple[str, str]


class CredentialCache:
    """In-memory cache with optional 0600 JSON persistence shared safely between processes."""

    def __init__(
        self,
        path: Path | None = None,
        default_ttl_seconds: float | None = 3600.0,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.path = path
        self.default_ttl_seconds = default_ttl_seconds
        self.max_entries = max_entries
        self.lock_timeout_seconds = lock_timeout_seconds
        self.clock = clock
        self._entries: dict[_Key, _Entry] = {}
        self._pending: dict[_Key, _Entry] = {}  # changes not yet in the file
        self._write_lock = asyncio.Lock()
        if path is not None:
            check_writable(path)
            try:
                raw = read_private(path)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise CacheError("cache_unusable", f"cannot read {path}: {reason}") from None
            if raw is not None:
                self._entries = _parse(raw, path)

    def expiry_for(self, now: float, valid_until: int | None = None) -> float | None:
        """When a credential obtained `now` stops being trusted: TTL or token caveat, earlier."""
        candidates = [float(valid_until)] if valid_until is not None else []
        if self.default_ttl_seconds is not None:
            candidates.append(now + self.default_ttl_seconds)
        return min(candidates) if candidates else None

    def lookup(
        self, host: str, scope: str, now: float, *, force_refresh: bool = False
    ) -> tuple[CacheStatus, Credential | None]:
        """MISS / HIT (usable) / STALE (expired, returned for inspection) / INVALID."""
        if force_refresh:
            return CacheStatus.MISS, None
        entry = self._entries.get((host, scope))
        if entry is None:
            return CacheStatus.MISS, None
        if entry.invalid:
            return CacheStatus.INVALID, None
        expires_at = entry.credential.expires_at
        if expires_at is not None and now >= expires_at:
            return CacheStatus.STALE, entry.credential
        return CacheStatus.HIT, entry.credential

    def store(self, host: str, scope: str, credential: Credential) -> None:
        """Remember `credential`, then write the file (blocking; kept in memory if that fails)."""
        self._remember((host, scope), _Entry(credential))
        self._save()

    def invalidate(self, host: str, scope: str) -> bool:
        """Mark an entry refused by the seller; True if there was one."""
        if not self._mark_invalid((host, scope)):
            return False
        self._save()
        return True

    async def store_async(self, host: str, scope: str, credential: Credential) -> CacheError | None:
        """`store` for the event loop: the file is written off the loop; a failure is returned."""
        self._remember((host, scope), _Entry(credential))
        return await self.persist()

    async def invalidate_async(self, host: str, scope: str) -> CacheError | None:
        """`invalidate` for the event loop; a failed file write is returned, not raised."""
        if not self._mark_invalid((host, scope)):
            return None
        return await self.persist()

    async def persist(self) -> CacheError | None:
        """Merge this cache's changes into the file in a worker thread; a failure is returned.

        Writes are serialised; each one takes the changes pending when it
        starts, and changes made while it runs stay pending for the next.
        """
        if self.path is None:
            return None
        async with self._write_lock:
            changes = dict(self._pending)
            try:
                merged = await asyncio.to_thread(self._sync, self.path, changes)
            except (OSError, CacheError) as exc:
                return _persist_failed(self.path, exc)
            self._adopt(merged, changes)
        return None

    def clear(self) -> None:
        """Forget every entry, in memory and in the file (other buyers' entries too)."""
        self._entries.clear()
        self._pending.clear()
        if self.path is None:
            return
        try:
            with exclusive_lock(self.path, self.lock_timeout_seconds):
                write_private_atomic(self.path, _payload({}))
        except OSError as exc:
            raise _persist_failed(self.path, exc) from None

    def __len__(self) -> int:
        return len(self._entries)

    def _remember(self, key: _Key, entry: _Entry) -> None:
        self._entries[key] = entry
        self._pending[key] = entry
        if len(self._entries) > self.max_entries:
            self._entries = _bounded(self._entries, self.max_entries, self.clock())

    def _mark_invalid(self, key: _Key) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._remember(key, _Entry(entry.credential, invalid=True))
        return True

    def _save(self) -> None:
        if self.path is None:
            return
        changes = dict(self._pending)
        try:
            merged = self._sync(self.path, changes)
        except (OSError, CacheError) as exc:
            raise _persist_failed(self.path, exc) from None
        self._adopt(merged, changes)

    def _sync(self, path: Path, changes: dict[_Key, _Entry]) -> dict[_Key, _Entry]:
        """Under the file lock: read the file, apply `changes`, bound, write (blocking)."""
        with exclusive_lock(path, self.lock_timeout_seconds):
            raw = read_private(path)
            merged = _parse(raw, path) if raw is not None else {}
            for key, change in changes.items():
                merged[key] = _merge(merged.get(key), change)
            merged = _bounded(merged, self.max_entries, self.clock())
            write_private_atomic(path, _payload(merged))
        return merged

    def _adopt(self, merged: dict[_Key, _Entry], synced: dict[_Key, _Entry]) -> None:
        """The file's new state becomes ours, plus changes made while it was written."""
        for key, entry in synced.items():
            if self._pending.get(key) is entry:
                del self._pending[key]
        self._entries = {**merged, **self._pending}


def _merge(current: _Entry | None, change: _Entry) -> _Entry:
    """One key: this cache's change against what the file holds now."""
    if current is None:
        return change
    same = current.credential.macaroon == change.credential.macaroon
    if change.invalid:  # refuse only the credential the seller refused
        return change if same else current
    if same:  # a credential already refused stays refused
        return current if current.invalid else change
    if current.invalid or change.credential.obtained_at >= current.credential.obtained_at:
        return change
    return current


def _bounded(entries: dict[_Key, _Entry], limit: int, now: float) -> dict[_Key, _Entry]:
    """At most `limit` entries: drop refused, then expired, then oldest credentials first."""
    if len(entries) <= limit:
        return entries

    def keep_priority(key: _Key) -> tuple[int, float]:
        entry = entries[key]
        expires_at = entry.credential.expires_at
        if entry.invalid:
            rank = 0
        elif expires_at is not None and now >= expires_at:
            rank = 1
        else:
            rank = 2
        return rank, entry.credential.obtained_at

    keep = set(sorted(entries, key=keep_priority)[len(entries) - limit :])
    return {key: entry for key, entry in entries.items() if key in keep}


def _parse(raw: bytes, path: Path) -> dict[_Key, _Entry]:
    entries: dict[_Key, _Entry] = {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
            raise ValueError("unknown cache file version")
        for item in data["entries"]:
            credential = Credential(
                macaroon=_text(item["macaroon"]),
                preimage_hex=_text(item["preimageHex"]),
                obtained_at=float(item["obtainedAt"]),
                expires_at=None if item["expiresAt"] is None else float(item["expiresAt"]),
            )
            key = (_text(item["host"]), _text(item["scope"]))
            entries[key] = _Entry(credential, item.get("invalid", False) is True)
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError("corrupt_cache", f"{path}: {type(exc).__name__}") from None
    return entries


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _payload(entries: dict[_Key, _Entry]) -> bytes:
    items: list[dict[str, Any]] = [
        {
            "host": host,
            "scope": scope,
            "macaroon": e.credential.macaroon,
            "preimageHex": e.credential.preimage_hex,
            "obtainedAt": e.credential.obtained_at,
            "expiresAt": e.credential.expires_at,
            "invalid": e.invalid,
        }
        for (host, scope), e in entries.items()
    ]
    return json.dumps({"version": _FILE_VERSION, "entries": items}, indent=2).encode("utf-8")


def _persist_failed(path: Path, exc: OSError | CacheError) -> CacheError:
    reason = exc.message if isinstance(exc, CacheError) else exc.strerror or type(exc).__name__
    return CacheError("cache_persist_failed", f"cannot write {path}: {reason}")
