"""Counted allowances (freebies: N free requests per client per period), one UPSERT each.

A row per (key, period) counts what was used; taking one is a single
conditional UPSERT, atomic on both databases (PostgreSQL's ON CONFLICT DO
UPDATE locks the row and re-checks the condition; a SQLite write holds the
database lock), so processes and replicas sharing the store never grant more
than the limit between them. A row carries when its period ends, after which
it is swept.
"""

from __future__ import annotations

from gateway.store.steps import Execute, FetchOne, Steps, writes

SWEEP_BATCH = 1000


@writes
def take_allowance(key: str, period: int, limit: int, expires_at: int) -> Steps[int | None]:
    """Use one of `limit`: the count used so far including this one, or None when none is left."""
    row = yield FetchOne(
        "INSERT INTO l402_allowances AS a (allowance_key, period, used, expires_at)"
        " VALUES (?, ?, 1, ?) ON CONFLICT (allowance_key, period) DO UPDATE"
        " SET used = a.used + 1 WHERE a.used < ? RETURNING used",
        (key, period, expires_at, limit),
    )
    return None if row is None else int(row[0])


@writes
def return_allowance(key: str, period: int) -> Steps[bool]:
    """Give one back (the request it admitted failed upstream); False if none was used."""
    changed = yield Execute(
        "UPDATE l402_allowances SET used = used - 1"
        " WHERE allowance_key = ? AND period = ? AND used > 0",
        (key, period),
    )
    return bool(changed == 1)


@writes
def sweep_allowances(now: int) -> Steps[int]:
    deleted = yield Execute(
        "DELETE FROM l402_allowances WHERE (allowance_key, period) IN"
        " (SELECT allowance_key, period FROM l402_allowances WHERE expires_at <= ? LIMIT ?)",
        (now, SWEEP_BATCH),
    )
    return int(deleted)
