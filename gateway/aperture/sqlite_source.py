"""Aperture's SQLite database, read-only, in bounded pages (see gateway.aperture.sourcesql).

The file is opened with `mode=ro`, in one read transaction (one snapshot for
the whole import), with the connection's length limit set to the read bound:
a statement that would load a larger value fails at once with SQLITE_TOOBIG,
before reading it, and the page is then read row by row, and the refused row
column by column, so the value is named (`Oversized`) and the rest of the
page is still read. Text is decoded with `surrogateescape`, so bytes that are
not UTF-8 reach the row checks (which name them) instead of an exception that
would quote them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.aperture.keystore import CONNECT_TIMEOUT_SECONDS, ApertureDbError, Raw
from gateway.aperture.rows import MAX_VALUE_BYTES, Oversized
from gateway.aperture.sourcesql import SQLITE, TRANSACTIONS

IN_LIST = 500


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _too_big(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_TOOBIG


class SqliteSource:
    """One read-only connection to Aperture's SQLite file (see module docstring)."""

    row_key = SQLITE.row_key

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.description = f"sqlite {path}"
        self.tables: frozenset[str] = frozenset()

    @classmethod
    def open(cls, path: Path) -> SqliteSource:
        if not path.is_file():
            raise ApertureDbError(f"{path}: no such file")
        uri = "file:" + quote(str(path.resolve()), safe="/") + "?mode=ro"
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=CONNECT_TIMEOUT_SECONDS, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise ApertureDbError(f"{path}: cannot open read-only: {exc}") from None
        source = cls(conn, path)
        try:
            conn.text_factory = _text
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            conn.execute("BEGIN")
            source.tables = frozenset(str(r[0]) for r in source._all(SQLITE.tables, ()))
        except BaseException:
            conn.close()
            raise
        return source

    def _all(self, sql: str, params: Sequence[object]) -> list[Any]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            if _too_big(exc):
                raise
            raise ApertureDbError(
                f"{self.path}: not readable as an Aperture database: {exc}"
            ) from None

    async def count_secrets(self) -> int:
        (row,) = self._all(SQLITE.count_secrets, ())
        return int(row[0])

    async def page(
        self, table: str, columns: Sequence[str], after: int | None, limit: int
    ) -> list[tuple[int, Raw]]:
        params: tuple[object, ...] = (limit,) if after is None else (after, limit)
        try:
            rows = self._all(SQLITE.page(table, columns, first=after is None), params)
        except sqlite3.Error:  # too big: somewhere in this page
            keys = self._all(SQLITE.page_keys(table, first=after is None), params)
            return [self._row(table, columns, int(k[0])) for k in keys]
        return [SQLITE.decode(row, columns) for row in rows]

    def _row(self, table: str, columns: Sequence[str], key: int) -> tuple[int, Raw]:
        try:
            (row,) = self._all(SQLITE.one_row(table, columns), (key,))
            return SQLITE.decode(row, columns)
        except sqlite3.Error:
            pass
        values: dict[str, object] = {}
        for column in columns:
            try:
                (row,) = self._all(SQLITE.one_value(table, column), (key,))
                values[column] = row[1]
            except sqlite3.Error:
                (size,) = self._all(SQLITE.blob_size(table, column), (key,))
                values[column] = Oversized(size[0] if isinstance(size[0], int) else None)
        return key, values

    async def transactions_for(self, key_ids: Sequence[bytes]) -> list[tuple[int, Raw]]:
        found: list[tuple[int, Raw]] = []
        for start in range(0, len(key_ids), IN_LIST):
            chunk = key_ids[start : start + IN_LIST]
            try:
                rows = self._all(SQLITE.transactions_for(len(chunk)), chunk)
                found += [SQLITE.decode(row, TRANSACTIONS) for row in rows]
            except sqlite3.Error:
                keys = self._all(SQLITE.transaction_keys_for(len(chunk)), chunk)
                found += [self._row("l402_transactions", TRANSACTIONS, int(k[0])) for k in keys]
        return found

    async def present(self, key_ids: Sequence[bytes]) -> set[bytes]:
        out: set[bytes] = set()
        for start in range(0, len(key_ids), IN_LIST):
            chunk = key_ids[start : start + IN_LIST]
            out.update(bytes(r[0]) for r in self._all(SQLITE.present(len(chunk)), chunk))
        return out

    async def close(self) -> None:
        self._conn.close()
