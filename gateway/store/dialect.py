"""The only places SQLite and PostgreSQL differ for the store, in one module.

Everything else (every query, every write, the schema's shape) is written once
in portable SQL: `?` placeholders, `ON CONFLICT` upserts, `CASE` instead of
`max()`/`GREATEST()`, booleans bound as Python bools. What is left:

- placeholders: asyncpg wants `$1..$n` (`render`, converted once per statement);
- column types in the DDL (`<blob>`, `<bigint>`, `<bool>`, `<float>` tokens), and
  `<unlogged>` tables (PostgreSQL writes no WAL for them; SQLite has no such thing);
- a statement to find out whether a table exists (before the schema does);
- locks: PostgreSQL takes an advisory lock around migrations, a SHARE lock
  on `l402_settlements` in `delete_tokens`, and a row lock (`FOR UPDATE`) on
  the balance or buckets a metering op reads before it writes; SQLite needs
  none of them, because a TRANSACTION op there holds the database's single
  write lock from its start.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

# pg_advisory_xact_lock key: one migrator at a time across gateways.
MIGRATION_LOCK_KEY = 0x1402_5C4E


@dataclass(frozen=True)
class Dialect:
    name: str
    numbered_params: bool
    types: dict[str, str] = field(repr=False)
    table_exists: str  # one parameter: the table name; returns a row if it exists
    migration_lock: str | None
    settlements_share_lock: str | None
    # Appended to a SELECT whose rows the same transaction then updates: on
    # PostgreSQL the rows stay locked until COMMIT, and each later statement
    # (READ COMMITTED) sees what transactions committed before the lock was had.
    row_lock: str = ""

    def ddl(self, statement: str) -> str:
        """Substitute the column-type tokens of a portable DDL statement."""
        for token, name in self.types.items():
            statement = statement.replace(token, name)
        return statement

    def render(self, sql: str) -> str:
        """The statement as this database's driver wants it (cached per statement)."""
        return _numbered(sql) if self.numbered_params else sql


@functools.lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """`?` -> `$1, $2, ...` (the store's SQL has no `?` inside string literals)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


SQLITE = Dialect(
    name="sqlite",
    numbered_params=False,
    types={
        "<blob>": "BLOB",
        "<bigint>": "INTEGER",
        "<bool>": "INTEGER",
        "<float>": "REAL",
        "<unlogged> ": "",
    },
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    migration_lock=None,
    settlements_share_lock=None,
)

POSTGRES = Dialect(
    name="postgres",
    numbered_params=True,
    types={
        "<blob>": "BYTEA",
        "<bigint>": "BIGINT",
        "<bool>": "BOOLEAN",
        "<float>": "DOUBLE PRECISION",
        "<unlogged>": "UNLOGGED",
    },
    table_exists=(
        "SELECT 1 FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = ?"
    ),
    migration_lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})",
    # SHARE blocks settlement inserts until the delete commits, and the DELETE's
    # snapshot (taken after the lock) sees every settlement committed before it.
    settlements_share_lock="LOCK TABLE l402_settlements IN SHARE MODE",
    row_lock=" FOR UPDATE",
)
