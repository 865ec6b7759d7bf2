"""Read-only access to Aperture's secret store (SQLite file or PostgreSQL database).

Aperture keeps one row per minted token in `secrets(id, hash, secret,
created_at)`: `hash` = sha256(66-byte identifier), `secret` = the 32-byte
root key (its aperturedb/secrets.go). Revoking a token there DELETEs that row
(and the token's `l402_transactions` row): a revocation leaves no trace but
the key's absence, which is how a re-import finds revocations. Since v0.5 it
also records `l402_transactions` (token_id, payment_hash, identifier_hash,
service_name, price_sats, state), which tells which service a key was sold
for, and `services` rows added through its admin API (they take precedence
over aperture.yaml there, so the import lists them).

Nothing here writes: SQLite is opened with `mode=ro`, PostgreSQL reads in a
READ ONLY transaction. Reads are paged and bounded (gateway.aperture.sourcesql);
root keys never appear in a repr or an error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from gateway.aperture.rows import RawRow

CONNECT_TIMEOUT_SECONDS = 10.0
QUERY_TIMEOUT_SECONDS = 120.0

Raw = RawRow


class ApertureDbError(Exception):
    """The source cannot be opened or is not an Aperture database (no secret in messages)."""


class ApertureSource(Protocol):
    """Aperture's database, read in pages; rows are column -> value (or `Oversized`)."""

    @property
    def description(self) -> str:
        """`sqlite PATH` or `postgres HOST:PORT/DB`: never a password."""
        ...

    @property
    def tables(self) -> frozenset[str]: ...

    @property
    def row_key(self) -> str:
        """What orders the pages and names a row whose `id` is unusable (`rowid`, `id`)."""
        ...

    async def count_secrets(self) -> int: ...

    async def page(
        self, table: str, columns: Sequence[str], after: int | None, limit: int
    ) -> list[tuple[int, Raw]]:
        """Up to `limit` rows after row key `after` (None: from the start), by row key."""
        ...

    async def transactions_for(self, key_ids: Sequence[bytes]) -> list[tuple[int, Raw]]:
        """The `l402_transactions` rows whose identifier_hash is one of `key_ids`."""
        ...

    async def present(self, key_ids: Sequence[bytes]) -> set[bytes]:
        """Those of `key_ids` that still have a row in `secrets` (not revoked there)."""
        ...

    async def close(self) -> None: ...


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


async def open_source(source: str) -> ApertureSource:
    """Open `sqlite:PATH` or a `postgresql://` URL read-only; ApertureDbError when unusable."""
    opened: ApertureSource
    if source.startswith(("postgresql://", "postgres://")):
        from gateway.aperture.pg_source import PostgresSource

        opened = await PostgresSource.open(source)
    elif "://" in source and not source.startswith("sqlite:"):
        raise ApertureDbError("--from must be sqlite:PATH or a postgresql:// URL")
    else:
        from gateway.aperture.sqlite_source import SqliteSource

        opened = SqliteSource.open(sqlite_path(source))
    if "secrets" not in opened.tables:
        await opened.close()
        raise ApertureDbError(f"{opened.description}: no `secrets` table: not Aperture's database")
    return opened
