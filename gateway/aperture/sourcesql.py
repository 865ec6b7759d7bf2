"""Every query `import-aperture` sends to Aperture's database, written once for both.

Reads are paged and bounded: rows come in pages ordered by a row key, and no
value larger than `MAX_VALUE_BYTES` is ever read (a 900 MB blob in a column
must cost a size check, not 900 MB of memory and a minute). What differs
between the two databases:

- placeholders: `?` for sqlite3, `$1..$n` for asyncpg;
- the row key: SQLite's `rowid` (Aperture's `id INTEGER PRIMARY KEY` is the
  rowid, and the rowid stays an integer even in a table where `id` holds
  text), PostgreSQL's `id` (SERIAL there, so always an integer);
- how large values are kept out. PostgreSQL: `octet_length()` (read from the
  value's header, the value itself stays in TOAST) is selected beside
  `CASE WHEN octet_length(c) <= bound THEN c END` (`pg_column_size` for the
  integer and timestamp columns, which have no octet_length). SQLite 3.40 has no
  `octet_length`, and its `length()` of text reads the text; instead the
  reader sets the connection's length limit (SQLITE_LIMIT_LENGTH), which
  refuses a statement before reading any byte of a larger value, and then
  finds the culprit row by row and column by column (`blob_size` reads a
  blob's size from the record header, not its content).

Table and column names are this module's constants; values are always bound
parameters (hence the S608 waivers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.aperture.rows import MAX_VALUE_BYTES, Oversized

SECRETS = ("id", "hash", "secret", "created_at")
TRANSACTIONS = (
    "id", "identifier_hash", "token_id", "payment_hash", "service_name", "price_sats", "state",
)  # fmt: skip
SERVICES = ("id", "name", "path_regexp", "price")
# Integer and timestamp columns in Aperture's PostgreSQL schema: no octet_length() there;
# pg_column_size() (the stored size) bounds them in any schema that differs.
FIXED_SIZE = frozenset({"id", "price_sats", "price", "created_at"})


@dataclass(frozen=True)
class SourceSql:
    """The queries for one kind of database (see module docstring)."""

    name: str
    row_key: str
    numbered: bool  # $1..$n placeholders
    guarded: bool  # sizes checked in SQL (PostgreSQL); else by the connection's limit
    tables: str  # the table names of the schema Aperture uses

    def _params(self, count: int, start: int = 1) -> list[str]:
        if self.numbered:
            return [f"${i}" for i in range(start, start + count)]
        return ["?"] * count

    def _in(self, count: int, start: int = 1) -> str:
        return "(" + ", ".join(self._params(count, start)) + ")"

    def _select(self, columns: Sequence[str]) -> str:
        if not self.guarded:
            return ", ".join(columns)
        sizes = [
            f"pg_column_size({c})" if c in FIXED_SIZE else f"octet_length({c})" for c in columns
        ]
        return ", ".join(
            f"{size}, CASE WHEN {size} <= {MAX_VALUE_BYTES} THEN {c} END"
            for c, size in zip(columns, sizes, strict=True)
        )

    def page(self, table: str, columns: Sequence[str], *, first: bool) -> str:
        """One page ordered by the row key: params (limit) or (after, limit)."""
        key = self.row_key
        where = "" if first else f" WHERE {key} > {self._params(1)[0]}"
        limit = self._params(1, 1 if first else 2)[0]
        select = f"SELECT {key}, {self._select(columns)} FROM {table}"  # noqa: S608
        return f"{select}{where} ORDER BY {key} LIMIT {limit}"

    def page_keys(self, table: str, *, first: bool) -> str:
        """The row keys of the same page (SQLite: to read a refused page row by row)."""
        key = self.row_key
        where = "" if first else f" WHERE {key} > {self._params(1)[0]}"
        limit = self._params(1, 1 if first else 2)[0]
        return f"SELECT {key} FROM {table}{where} ORDER BY {key} LIMIT {limit}"  # noqa: S608

    def transactions_for(self, count: int) -> str:
        """The `l402_transactions` rows of `count` key ids (identifier_hash is unique)."""
        select = f"SELECT {self.row_key}, {self._select(TRANSACTIONS)}"
        where = f" WHERE identifier_hash IN {self._in(count)} ORDER BY {self.row_key}"
        return f"{select} FROM l402_transactions{where}"

    def transaction_keys_for(self, count: int) -> str:
        where = f" WHERE identifier_hash IN {self._in(count)} ORDER BY {self.row_key}"
        return f"SELECT {self.row_key} FROM l402_transactions{where}"  # noqa: S608

    def one_row(self, table: str, columns: Sequence[str]) -> str:
        where = f" WHERE {self.row_key} = {self._params(1)[0]}"
        return f"SELECT {self.row_key}, {self._select(columns)} FROM {table}{where}"  # noqa: S608

    def one_value(self, table: str, column: str) -> str:
        return self.one_row(table, (column,))

    def blob_size(self, table: str, column: str) -> str:
        """SQLite: the size of a blob without reading it (NULL for any other type)."""
        size = f"CASE WHEN typeof({column}) = 'blob' THEN length({column}) END"
        where = f" WHERE {self.row_key} = {self._params(1)[0]}"
        return f"SELECT {size} FROM {table}{where}"  # noqa: S608

    def present(self, count: int) -> str:
        """Which of `count` key ids still have a root key in Aperture (it deletes revoked ones)."""
        return f"SELECT hash FROM secrets WHERE hash IN {self._in(count)}"  # noqa: S608

    count_secrets = "SELECT count(*) FROM secrets"

    def decode(
        self, row: Sequence[object], columns: Sequence[str]
    ) -> tuple[int, dict[str, object]]:
        """(row key, column -> value or Oversized) from one result row."""
        key = row[0]
        if not isinstance(key, int):
            raise TypeError("row key is not an integer")
        if not self.guarded:
            return key, dict(zip(columns, row[1:], strict=True))
        values: dict[str, object] = {}
        for index, column in enumerate(columns):
            size, value = row[1 + 2 * index], row[2 + 2 * index]
            if value is None and isinstance(size, int) and size > MAX_VALUE_BYTES:
                values[column] = Oversized(size)
            else:
                values[column] = value
        return key, values


SQLITE = SourceSql(
    name="sqlite",
    row_key="rowid",
    numbered=False,
    guarded=False,
    tables="SELECT name FROM sqlite_master WHERE type = 'table'",
)
POSTGRES = SourceSql(
    name="postgres",
    row_key="id",
    numbered=True,
    guarded=True,
    tables=(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ),
)
