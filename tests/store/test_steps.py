"""The sans-I/O op machinery and the dialect rules (pure functions, no database)."""

from __future__ import annotations

import pytest

from gateway.store import ledger, tokens
from gateway.store.dialect import POSTGRES, SQLITE
from gateway.store.steps import Execute, FetchOne, Kind, Step, chunks, drive, placeholders


def test_an_op_is_driven_step_by_step_with_each_result_sent_back() -> None:
    seen: list[Step] = []

    def runner(step: Step) -> object:
        seen.append(step)
        return (
            0 if isinstance(step, Execute) else (None if "root_key IS NOT NULL" in step.sql else 1)
        )

    op = tokens.reserve(b"k" * 32, 100, 30, b"l" * 16)
    assert (op.name, op.kind, op.writes) == ("reserve", Kind.WRITE, True)
    assert drive(op, runner).result.value == "unknown"  # UPDATE changed 0 rows, no row found
    assert [type(s) for s in seen] == [Execute, FetchOne]
    assert seen[0].params == (130, b"l" * 16, b"k" * 32, 100)


def test_op_kinds() -> None:
    assert tokens.get_root_key(b"k").kind is Kind.READ
    assert tokens.put_token.__name__ == "put_token"
    assert tokens.revoke(b"t" * 32, 1).kind is Kind.TRANSACTION
    assert ledger.add_paid_requests("r", "2026-01-01", 1).kind is Kind.WRITE


def test_placeholders_are_numbered_for_asyncpg_only() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?"
    assert SQLITE.render(sql) == sql
    assert POSTGRES.render(sql) == "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4"
    assert placeholders(3) == "(?, ?, ?)"
    with pytest.raises(ValueError, match="at least one"):
        placeholders(0)
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_ddl_types_per_dialect() -> None:
    ddl = "CREATE TABLE x (a <blob>, b <bigint>, c <bool>, d <float>, e INTEGER)"
    assert SQLITE.ddl(ddl) == "CREATE TABLE x (a BLOB, b INTEGER, c INTEGER, d REAL, e INTEGER)"
    assert POSTGRES.ddl(ddl) == (
        "CREATE TABLE x (a BYTEA, b BIGINT, c BOOLEAN, d DOUBLE PRECISION, e INTEGER)"
    )
    assert SQLITE.migration_lock is None
    assert SQLITE.settlements_share_lock is None
    assert POSTGRES.settlements_share_lock == "LOCK TABLE l402_settlements IN SHARE MODE"
