"""Read-only access to Aperture's secret store (SQLite file or PostgreSQL database).

Aperture keeps one row per minted token in `secrets(hash, secret, created_at)`:
`hash` = sha256(66-byte identifier), `secret` = the 32-byte root key (see its
aperturedb/secrets.go). Since v0.5 it also records `l402_transactions`
(token_id, payment_hash, identifier_hash, service_name, state), which tells us
which service a key was sold for, and `services` rows added through its admin
API (they take precedence over aperture.yaml there, so we list them).

Nothing here writes: SQLite is opened with `mode=ro`, PostgreSQL reads in a
READ ONLY transaction. Root keys never appear in a repr or an error message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

KEY_BYTES = 32  # Aperture's l402.SecretSize
CONNECT_TIMEOUT_SECONDS = 10.0
QUERY_TIMEOUT_SECONDS = 120.0


class ApertureDbError(Exception):
    """The source cannot be opened or is not an Aperture database (no secret in messages)."""


@dataclass(frozen=True)
class SecretRow:
    """One root key as Aperture stored it, plus what its transaction row says."""

    row_id: int
    key_id: bytes
    root_key: bytes = field(repr=False)
    created_at: int | None  # unix seconds; None when Aperture's timestamp is unreadable
    token_id: bytes | None = None
    payment_hash: bytes | None = None
    service: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class ServiceRow:
    """A service defined through Aperture's admin API (its `services` table)."""

    name: str
    path_regexp: str
    price: int


@dataclass(frozen=True)
class Snapshot:
    description: str  # "sqlite /path" or "postgres host:port/db": never a password
    secrets: tuple[SecretRow, ...]
    services: tuple[ServiceRow, ...]
    has_transactions: bool


def describe_source(source: str) -> str:
    if source.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(source)
        try:
            port = parts.port
        except ValueError:
            port = None
        where = f"{parts.hostname or 'localhost'}:{port or 5432}"
        return f"postgres {where}{parts.path or '/'}"
    return f"sqlite {sqlite_path(source)}"


def sqlite_path(source: str) -> Path:
    """`sqlite:PATH`, `sqlite:///abs` or a plain path."""
    text = source[len("sqlite:") :] if source.startswith("sqlite:") else source
    if text.startswith("//"):
        text = text[2:]
    return Path(text).expanduser()


async def read_source(source: str) -> Snapshot:
    """Everything to import from `sqlite:PATH` or a `postgresql://` URL."""
    if source.startswith(("postgresql://", "postgres://")):
        return await _read_postgres(source)
    if "://" in source and not source.startswith("sqlite:"):
        raise ApertureDbError("--from must be sqlite:PATH or a postgresql:// URL")
    return _read_sqlite(sqlite_path(source))


# -- SQLite ------------------------------------------------------------------------------


def _read_sqlite(path: Path) -> Snapshot:
    if not path.is_file():
        raise ApertureDbError(f"{path}: no such file")
    uri = "file:" + quote(str(path.resolve()), safe="/") + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=CONNECT_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise ApertureDbError(f"{path}: cannot open read-only: {exc}") from None
    try:
        tables = {
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        rows = [dict(zip(_COLUMNS, r, strict=True)) for r in conn.execute(_secrets_sql(tables))]
        services = list(conn.execute(_SERVICES_SQL)) if "services" in tables else []
    except sqlite3.DatabaseError as exc:
        raise ApertureDbError(f"{path}: not readable as an Aperture database: {exc}") from None
    finally:
        conn.close()
    return _snapshot(f"sqlite {path}", rows, services, "l402_transactions" in tables)


# -- PostgreSQL --------------------------------------------------------------------------


async def _read_postgres(dsn: str) -> Snapshot:
    import asyncpg  # only when needed

    description = describe_source(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        # asyncpg's messages name host, user and database, never the password.
        raise ApertureDbError(f"{description}: cannot connect: {type(exc).__name__}") from None
    try:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            found = await conn.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()",
                timeout=QUERY_TIMEOUT_SECONDS,
            )
            tables = {str(r["table_name"]) for r in found}
            if "secrets" not in tables:
                raise ApertureDbError(f"{description}: no `secrets` table: not Aperture's database")
            raw = await conn.fetch(_secrets_sql(tables), timeout=QUERY_TIMEOUT_SECONDS)
            rows = [dict(zip(_COLUMNS, tuple(r), strict=True)) for r in raw]
            services: list[Sequence[Any]] = []
            if "services" in tables:
                services = [
                    tuple(r) for r in await conn.fetch(_SERVICES_SQL, timeout=QUERY_TIMEOUT_SECONDS)
                ]
    except asyncpg.PostgresError as exc:
        raise ApertureDbError(f"{description}: query failed: {type(exc).__name__}") from None
    finally:
        await conn.close()
    return _snapshot(description, rows, services, "l402_transactions" in tables)


# -- shared ------------------------------------------------------------------------------

_COLUMNS = (
    "id", "hash", "secret", "created_at", "token_id", "payment_hash", "service_name", "state",
)  # fmt: skip
_SERVICES_SQL = "SELECT name, path_regexp, price FROM services ORDER BY id"


def _secrets_sql(tables: set[str]) -> str:
    if "secrets" not in tables:
        raise ApertureDbError("no `secrets` table: not Aperture's database")
    if "l402_transactions" in tables:
        return (
            "SELECT s.id, s.hash, s.secret, s.created_at, t.token_id, t.payment_hash, "
            "t.service_name, t.state FROM secrets s "
            "LEFT JOIN l402_transactions t ON t.identifier_hash = s.hash ORDER BY s.id"
        )
    return "SELECT id, hash, secret, created_at, NULL, NULL, NULL, NULL FROM secrets ORDER BY id"


def _snapshot(
    description: str,
    rows: list[dict[str, Any]],
    services: Sequence[Sequence[Any]],
    has_transactions: bool,
) -> Snapshot:
    return Snapshot(
        description=description,
        secrets=tuple(_secret_row(r) for r in rows),
        services=tuple(ServiceRow(str(s[0]), str(s[1] or ""), int(s[2] or 0)) for s in services),
        has_transactions=has_transactions,
    )


def _secret_row(r: Mapping[str, Any]) -> SecretRow:
    token_id, payment_hash = _bytes(r["token_id"]), _bytes(r["payment_hash"])
    return SecretRow(
        row_id=int(r["id"]),
        key_id=_bytes(r["hash"]) or b"",
        root_key=_bytes(r["secret"]) or b"",
        created_at=parse_timestamp(r["created_at"]),
        token_id=token_id,
        payment_hash=payment_hash,
        service=None if r["service_name"] is None else str(r["service_name"]),
        state=None if r["state"] is None else str(r["state"]),
    )


def _bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None  # a text value where Aperture writes BLOBs: treated as unknown


def expected_key_id(payment_hash: bytes, token_id: bytes) -> bytes:
    """sha256 of the version-0 identifier: what `secrets.hash` must be for this token."""
    return hashlib.sha256(b"\x00\x00" + payment_hash + token_id).digest()


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"\s*(Z|[+-]\d\d:?\d\d)?(?:\s+[A-Z]{1,5})?"
)


def parse_timestamp(value: object) -> int | None:
    """Unix seconds from what Aperture's drivers stored (UTC when no zone is given)."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    m = _TIMESTAMP.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    zone = m.group(8)
    offset = dt.timedelta(0)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if zone[0] == "-":
            offset = -offset
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone(offset))
    except ValueError:
        return None
    return int(moment.timestamp())
