"""Payment-scheme sessions and consumed challenges: each action one transaction.

A session's balance is an `l402_balances` row in msat under the session id
(gateway.store.balances: bearer requests reserve and settle against it like
any metered balance); its deposit and top-up invoices are `l402_tokens` rows
of scheme `session`, consumed here (`used_at`) in the same transaction that
credits them, so one payment opens or tops up once. The answer of an open, a
top-up or a close is kept under its challenge id (`l402_payment_results`)
and replayed to a retried credential (the session draft's idempotency).

A close is a compare-and-set `open -> closed` that, in the same
transaction, takes everything the balance has left over its live
reservations: that is the refund, recorded as owed (`pending`). Paying it is
claimed (`paying`, with a deadline) by one process at a time and ends
`succeeded` or `failed`; nothing reopens a session.
"""

from __future__ import annotations

from gateway.store.balances import _read, credit_steps
from gateway.store.dialect import Dialect
from gateway.store.steps import (
    Execute,
    FetchAll,
    FetchOne,
    Row,
    Steps,
    reads,
    transaction,
    writes,
)
from gateway.store.types import (
    Consumed,
    SessionAction,
    SessionConflict,
    SessionRow,
    StoredAnswer,
)

UNIT = "msat"
SWEEP_BATCH = 1000
_COLUMNS = (
    "session_id, route, unit_msat, return_invoice, status, opened_at, last_activity,"
    " closed_at, close_reason, refund_msat, refund_state, refund_claim_until, refund_fee_msat,"
    " refund_note"
)


def _session(row: Row, units: int, held: int) -> SessionRow:
    return SessionRow(
        session_id=bytes(row[0]),
        route=str(row[1]),
        unit_msat=int(row[2]),
        return_invoice=str(row[3]),
        status=str(row[4]),
        opened_at=int(row[5]),
        last_activity=int(row[6]),
        closed_at=None if row[7] is None else int(row[7]),
        close_reason=None if row[8] is None else str(row[8]),
        refund_msat=None if row[9] is None else int(row[9]),
        refund_state=None if row[10] is None else str(row[10]),
        refund_claim_until=None if row[11] is None else int(row[11]),
        refund_fee_msat=None if row[12] is None else int(row[12]),
        refund_note=None if row[13] is None else str(row[13]),
        balance_msat=units,
        held_msat=held,
    )


def _read_session(session_id: bytes, now: int, lock: str = "") -> Steps[SessionRow | None]:
    row = yield FetchOne(
        f"SELECT {_COLUMNS} FROM l402_sessions WHERE session_id = ?" + lock,  # noqa: S608
        (session_id,),
    )
    if row is None:
        return None
    balance = yield from _read(session_id, now)
    units, held = (0, 0) if balance is None else (balance.units, balance.held)
    return _session(row, units, held)


def _replay(challenge_id: str, now: int) -> Steps[StoredAnswer | None]:
    row = yield FetchOne(
        "SELECT status, body FROM l402_payment_results WHERE challenge_id = ? AND expires_at > ?",
        (challenge_id, now),
    )
    return None if row is None else StoredAnswer(int(row[0]), str(row[1]))


def _keep(challenge_id: str, answer: StoredAnswer, expires_at: int) -> Steps[None]:
    yield Execute(
        "INSERT INTO l402_payment_results (challenge_id, status, body, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (challenge_id, answer.status, answer.body, expires_at),
    )


def _consume(payment_hash: bytes, now: int) -> Steps[bool]:
    """Mark a deposit or top-up invoice's row used, once (not revoked, not leased); a
    Payment-scheme row's key id is its payment hash."""
    changed = yield Execute(
        "UPDATE l402_tokens SET used_at = ? WHERE key_id = ? AND scheme = 'session'"
        " AND root_key IS NOT NULL AND used_at IS NULL"
        " AND (lease_until IS NULL OR lease_until <= ?)",
        (now, payment_hash, now),
    )
    return bool(changed == 1)


@transaction
def open_session(
    action: SessionAction, return_invoice: str, unit_msat: int, answer: StoredAnswer
) -> Steps[Consumed]:
    """Consume the deposit, create the session, credit the deposit, keep the answer."""
    replay = yield from _replay(action.challenge_id, action.now)
    if replay is not None:
        return Consumed(replayed=replay)
    if not (yield from _consume(action.payment_hash, action.now)):
        return Consumed(refused="this deposit was used already")
    created = yield Execute(
        "INSERT INTO l402_sessions (session_id, route, unit_msat, return_invoice, status,"
        " opened_at, last_activity) VALUES (?, ?, ?, ?, 'open', ?, ?)"
        " ON CONFLICT (session_id) DO NOTHING",
        (action.session_id, action.route, unit_msat, return_invoice, action.now, action.now),
    )
    if created != 1:  # rolled back with the consumption: nothing changes
        raise SessionConflict("this session exists already")
    yield from credit_steps(
        action.session_id, action.payment_hash, action.amount_msat, UNIT, action.route, action.now
    )
    yield from _keep(action.challenge_id, answer, action.keep_until)
    return Consumed(answer=answer)


@transaction
def top_up_session(
    action: SessionAction, answer: StoredAnswer, dialect: Dialect
) -> Steps[Consumed]:
    """Consume a top-up invoice and credit it to an open session, keeping the answer."""
    replay = yield from _replay(action.challenge_id, action.now)
    if replay is not None:
        return Consumed(replayed=replay)
    session = yield from _read_session(action.session_id, action.now, dialect.row_lock)
    if session is None:
        return Consumed(refused="no such session")
    if session.status != "open":
        return Consumed(refused="the session is closed", closed=True)
    if session.route != action.route:
        return Consumed(refused="the session belongs to another route")
    if not (yield from _consume(action.payment_hash, action.now)):
        return Consumed(refused="this top-up invoice was used already")
    yield from credit_steps(
        action.session_id, action.payment_hash, action.amount_msat, UNIT, action.route, action.now
    )
    yield Execute(
        "UPDATE l402_sessions SET last_activity = ? WHERE session_id = ?",
        (action.now, action.session_id),
    )
    yield from _keep(action.challenge_id, answer, action.keep_until)
    return Consumed(answer=answer)


@reads
def get_session(session_id: bytes, now: int) -> Steps[SessionRow | None]:
    return (yield from _read_session(session_id, now))


@reads
def replayed_answer(challenge_id: str, now: int) -> Steps[StoredAnswer | None]:
    return (yield from _replay(challenge_id, now))


@writes
def touch_session(session_id: bytes, now: int) -> Steps[None]:
    yield Execute(
        "UPDATE l402_sessions SET last_activity = ? WHERE session_id = ? AND status = 'open'"
        " AND last_activity < ?",
        (now, session_id, now),
    )


@transaction
def close_session(
    session_id: bytes, reason: str, now: int, dialect: Dialect
) -> Steps[SessionRow | None]:
    """Close an open session and take what its balance has left as the refund owed.

    Returns the closed session (refund_state `pending`, or `skipped` when
    nothing is owed), or None when it was not open (closed already, or absent).
    """
    session = yield from _read_session(session_id, now, dialect.row_lock)
    if session is None or session.status != "open":
        return None
    balance = yield from _read(session_id, now, dialect.row_lock)
    refund = 0 if balance is None else balance.available
    if refund:
        yield Execute(
            "UPDATE l402_balances SET units = units - ?, debited = debited + ?, updated_at = ?"
            " WHERE balance_id = ?",
            (refund, refund, now, session_id),
        )
    state = "pending" if refund else "skipped"
    yield Execute(
        "UPDATE l402_sessions SET status = 'closed', closed_at = ?, close_reason = ?,"
        " refund_msat = ?, refund_state = ? WHERE session_id = ? AND status = 'open'",
        (now, reason, refund, state, session_id),
    )
    return (yield from _read_session(session_id, now))


@writes
def claim_refund(session_id: bytes, now: int, claim_until: int) -> Steps[bool]:
    """Take the one attempt at paying a refund (or one whose claimer died)."""
    changed = yield Execute(
        "UPDATE l402_sessions SET refund_state = 'paying', refund_claim_until = ?"
        " WHERE session_id = ? AND (refund_state = 'pending'"
        " OR (refund_state = 'paying' AND refund_claim_until <= ?))",
        (claim_until, session_id, now),
    )
    return bool(changed == 1)


@writes
def finish_refund(
    session_id: bytes, succeeded: bool, fee_msat: int | None, note: str | None
) -> Steps[bool]:
    changed = yield Execute(
        "UPDATE l402_sessions SET refund_state = ?, refund_fee_msat = ?, refund_note = ?,"
        " refund_claim_until = NULL WHERE session_id = ? AND refund_state = 'paying'",
        ("succeeded" if succeeded else "failed", fee_msat, note, session_id),
    )
    return bool(changed == 1)


@writes
def keep_answer(challenge_id: str, answer: StoredAnswer, expires_at: int) -> Steps[bool]:
    """Keep a close's answer for its retries (first writer wins)."""
    added = yield Execute(
        "INSERT INTO l402_payment_results (challenge_id, status, body, expires_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (challenge_id) DO NOTHING",
        (challenge_id, answer.status, answer.body, expires_at),
    )
    return bool(added == 1)


@reads
def idle_sessions(last_activity_before: int, limit: int) -> Steps[list[bytes]]:
    rows = yield FetchAll(
        "SELECT session_id FROM l402_sessions WHERE status = 'open' AND last_activity < ?"
        " ORDER BY last_activity LIMIT ?",
        (last_activity_before, limit),
    )
    return [bytes(r[0]) for r in rows]


@reads
def unpaid_refunds(now: int, limit: int) -> Steps[list[bytes]]:
    """Closed sessions whose refund is owed and not being paid (or whose payer died)."""
    rows = yield FetchAll(
        "SELECT session_id FROM l402_sessions WHERE refund_state = 'pending'"
        " OR (refund_state = 'paying' AND refund_claim_until <= ?) LIMIT ?",
        (now, limit),
    )
    return [bytes(r[0]) for r in rows]


@writes
def sweep_answers(now: int) -> Steps[int]:
    deleted = yield Execute(
        "DELETE FROM l402_payment_results WHERE challenge_id IN"
        " (SELECT challenge_id FROM l402_payment_results WHERE expires_at <= ? LIMIT ?)",
        (now, SWEEP_BATCH),
    )
    return int(deleted)


@transaction
def secret(name: str, candidate: bytes, now: int) -> Steps[bytes]:
    """The named server secret, created from `candidate` by whichever process asks first."""
    row = yield FetchOne("SELECT value FROM l402_secrets WHERE name = ?", (name,))
    if row is not None:  # the usual case: no write (a read-only store still starts)
        return bytes(row[0])
    yield Execute(
        "INSERT INTO l402_secrets (name, value, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING",
        (name, candidate, now),
    )
    row = yield FetchOne("SELECT value FROM l402_secrets WHERE name = ?", (name,))
    assert row is not None
    return bytes(row[0])


@reads
def count_open_sessions() -> Steps[int]:
    row = yield FetchOne("SELECT COUNT(*) FROM l402_sessions WHERE status = 'open'")
    return 0 if row is None else int(row[0])
