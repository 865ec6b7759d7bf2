"""Credential cache: pay once, reuse the token while the seller accepts it.

Keyed by host + scope (the route path unless the caller names a scope). An
entry's life: `store` -> HIT until its expiry -> STALE; `invalidate` (the
seller refused it with 401/402) -> INVALID until a new `store`. A cached
credential is a bearer secret (macaroon + preimage), so the optional JSON file
is created 0600, written atomically (temp file + fsync + rename), and a file
that group or others can read is refused rather than trusted.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.buyer.errors import CacheError

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
        return f"L402 {self.macaroon}:{self.preimage_hex}"


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
        if path is not None and path.exists():
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
        write_private_atomic(self.path, payload.encode("utf-8"))


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
