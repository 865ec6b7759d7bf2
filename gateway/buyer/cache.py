"""Credential cache: pay once, reuse the token while the seller accepts it.

Keyed by host + scope (the route path unless the caller names a scope). An
entry's life: `store` -> HIT until its expiry -> STALE; `invalidate` (the
seller refused it with 401/402) -> INVALID until a new `store`. A cached
credential is a bearer secret (macaroon + preimage), so the optional JSON file
is created 0600, written atomically (temp file + fsync + rename), and a file
that group or others can read is refused rather than trusted.

A cache given a path checks at construction (before any payment) that the file
can be written there, and raises `CacheError("cache_unusable")` if not. After
that, a failed write never loses a credential: the entry is kept in memory
and the failure is returned (`store_async` / `invalidate_async`, used by the
client, which writes the file in a worker thread) or raised as
`CacheError("cache_persist_failed")` (the blocking `store` / `invalidate`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.buyer.errors import CacheError
from gateway.l402.credentials import format_authorization

_FILE_VERSION = 1


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


@dataclass
class _Entry:
    credential: Credential
    invalid: bool = False


class CredentialCache:
    """In-memory cache with optional 0600 JSON persistence."""

    def __init__(self, path: Path | None = None, default_ttl_seconds: float | None = 3600.0):
        self.path = path
        self.default_ttl_seconds = default_ttl_seconds
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._write_lock = asyncio.Lock()
        if path is not None:
            _check_writable(path)
            if path.exists():
                self._load(path)

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
        self._entries[(host, scope)] = _Entry(credential)
        self._save()

    def invalidate(self, host: str, scope: str) -> bool:
        """Mark an entry refused by the seller; True if there was one."""
        entry = self._entries.get((host, scope))
        if entry is None:
            return False
        entry.invalid = True
        self._save()
        return True

    async def store_async(self, host: str, scope: str, credential: Credential) -> CacheError | None:
        """`store` for the event loop: the file is written off the loop; a failure is returned."""
        self._entries[(host, scope)] = _Entry(credential)
        return await self.persist()

    async def invalidate_async(self, host: str, scope: str) -> CacheError | None:
        """`invalidate` for the event loop; a failed file write is returned, not raised."""
        entry = self._entries.get((host, scope))
        if entry is None:
            return None
        entry.invalid = True
        return await self.persist()

    async def persist(self) -> CacheError | None:
        """Write the current entries in a worker thread; the failure (if any) is returned.

        Writes are serialised and each one snapshots the entries when it starts,
        so the file always ends with the latest state.
        """
        if self.path is None:
            return None
        async with self._write_lock:
            data = self._payload()
            try:
                await asyncio.to_thread(write_private_atomic, self.path, data)
            except OSError as exc:
                return _persist_failed(self.path, exc)
        return None

    def clear(self) -> None:
        self._entries.clear()
        self._save()

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self, path: Path) -> None:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CacheError(
                "insecure_permissions", f"{path} is readable by others (mode {mode & 0o777:o})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
                raise ValueError("unknown cache file version")
            for item in data["entries"]:
                credential = Credential(
                    macaroon=str(item["macaroon"]),
                    preimage_hex=str(item["preimageHex"]),
                    obtained_at=float(item["obtainedAt"]),
                    expires_at=None if item["expiresAt"] is None else float(item["expiresAt"]),
                )
                key = (str(item["host"]), str(item["scope"]))
                self._entries[key] = _Entry(credential, bool(item.get("invalid", False)))
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheError("corrupt_cache", f"{path}: {type(exc).__name__}") from None

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_private_atomic(self.path, self._payload())
        except OSError as exc:
            raise _persist_failed(self.path, exc) from None

    def _payload(self) -> bytes:
        entries: list[dict[str, Any]] = [
            {
                "host": host,
                "scope": scope,
                "macaroon": e.credential.macaroon,
                "preimageHex": e.credential.preimage_hex,
                "obtainedAt": e.credential.obtained_at,
                "expiresAt": e.credential.expires_at,
                "invalid": e.invalid,
            }
            for (host, scope), e in self._entries.items()
        ]
        payload = json.dumps({"version": _FILE_VERSION, "entries": entries}, indent=2)
        return payload.encode("utf-8")


def _persist_failed(path: Path, exc: OSError) -> CacheError:
    reason = exc.strerror or type(exc).__name__
    return CacheError("cache_persist_failed", f"cannot write {path}: {reason}")


def _check_writable(path: Path) -> None:
    """Fail now, before any payment, if the cache file could never be written at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() and not path.is_file():
            raise CacheError("cache_unusable", f"{path} exists and is not a regular file")
        probe = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.probe")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CacheError(
            "cache_unusable", f"cannot write a cache file at {path}: {reason}"
        ) from None


def write_private_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` as mode 0600 with no window where a partial file is visible."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
