"""Payment-scheme sessions as an operator sees them: listed, filtered, paged, with their credits.

Read-only views for the admin API and the CLI (`l402-gateway sessions ...`);
the sessions' own actions (open, top-up, close, refund) are in
gateway.store.sessions. A listing reads each session's balance in the same
statement (a join, not one query per row), newest first by (opened_at,
session_id), so a cursor of the last row seen continues it without skipping
sessions opened in the same second.
"""

from __future__ import annotations

from gateway.store.sessions import _COLUMNS, _session
from gateway.store.steps import FetchAll, Row, Steps, reads
from gateway.store.types import SessionCredit, SessionInfo

SESSION_STATUSES = ("open", "closed")
REFUND_STATES = ("pending", "paying", "succeeded", "failed", "skipped")

_SELECT = (
    f"SELECT {_COLUMNS}, COALESCE(b.units, 0), COALESCE(b.credited, 0),"  # noqa: S608 (constant)
    " COALESCE(b.debited, 0), (SELECT COALESCE(SUM(h.amount), 0) FROM l402_balance_holds h"
    " WHERE h.balance_id = l402_sessions.session_id AND h.expires_at > ?)"
    " FROM l402_sessions LEFT JOIN l402_balances b ON b.balance_id = l402_sessions.session_id"
)


def _info(row: Row) -> SessionInfo:
    columns = len(_COLUMNS.split(","))
    units, credited, debited, held = (int(v) for v in row[columns : columns + 4])
    return SessionInfo(_session(row, units, held), credited, debited)


@reads
def list_sessions(
    status: str | None,
    route: str | None,
    refund_state: str | None,
    limit: int,
    before: tuple[int, bytes] | None,
    now: int,
) -> Steps[list[SessionInfo]]:
    """Newest first; each filter applies when given; `before` = (opened_at, session_id)
    of the last row seen continues a listing."""
    where: list[str] = []
    params: list[object] = [now]
    for column, value in (("status", status), ("route", route), ("refund_state", refund_state)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if before is not None:
        # `opened_at <= ?` is implied by the row comparison but bounds the scan.
        where.append("opened_at <= ? AND (opened_at, session_id) < (?, ?)")
        params += [before[0], before[0], before[1]]
    sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
    rows = yield FetchAll(
        sql + " ORDER BY opened_at DESC, session_id DESC LIMIT ?", (*params, limit)
    )
    return [_info(row) for row in rows]


@reads
def find_session(session_id: bytes, now: int) -> Steps[SessionInfo | None]:
    rows = yield FetchAll(_SELECT + " WHERE session_id = ?", (now, session_id))
    return _info(rows[0]) if rows else None


@reads
def session_credits(session_id: bytes) -> Steps[list[SessionCredit]]:
    """The deposit and every top-up credited to the session, oldest first."""
    rows = yield FetchAll(
        "SELECT payment_id, units, created_at FROM l402_balance_credits WHERE balance_id = ?"
        " ORDER BY created_at, payment_id",
        (session_id,),
    )
    return [SessionCredit(bytes(r[0]), int(r[1]), int(r[2])) for r in rows]
