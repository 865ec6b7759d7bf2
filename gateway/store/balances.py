"""Metered balances: credit once per payment, reserve, settle, release, read, sweep.

A balance is an integer number of units (tokens, requests, bytes, msat, ...)
keyed by bytes (an L402 token id, a Payment-scheme payment hash, a session
id). Requests hold reservations against it; what is available to a new
request is the balance minus every live (unexpired) reservation.

Atomicity: every op that reads the balance before writing it is a
TRANSACTION that reads the balance row first, with the dialect's row lock
(PostgreSQL: `FOR UPDATE`, held to COMMIT; SQLite: the write lock BEGIN
IMMEDIATE took). Every reserve and settle of one balance is therefore
serialised, in every process and replica, and each of their later
statements sees the reservations committed before it (READ COMMITTED takes a
snapshot per statement). So a reservation is granted only against units no
other live reservation holds, and a settlement never debits units that
another live reservation holds: the balance never goes below zero, and the
sum debited never exceeds the sum credited.

Expiry: a reservation past its `expires_at` stops counting at once (a
crashed worker's hold frees its units by itself); its row stays until
`sweep_holds` deletes it `grace` seconds later, and until then it can still
be settled (a late answer is still billed, from what is left).
"""

from __future__ import annotations

from gateway.store.dialect import Dialect
from gateway.store.steps import Execute, FetchOne, Steps, reads, transaction, writes
from gateway.store.types import (
    Balance,
    BalanceMismatch,
    Credit,
    Hold,
    HoldStatus,
    Settlement,
    SettleStatus,
)

SWEEP_BATCH = 1000
HOLD_GRACE = 3600  # seconds an expired reservation can still be settled

_HELD = (
    "SELECT COALESCE(SUM(amount), 0) FROM l402_balance_holds"
    " WHERE balance_id = ? AND expires_at > ?"
)
_BALANCE = (
    "SELECT unit, scope, units, credited, debited, created_at, updated_at"
    " FROM l402_balances WHERE balance_id = ?"
)


def _read(balance_id: bytes, now: int, lock: str = "") -> Steps[Balance | None]:
    row = yield FetchOne(_BALANCE + lock, (balance_id,))
    if row is None:
        return None
    held = yield FetchOne(_HELD, (balance_id, now))
    return Balance(
        balance_id=balance_id,
        unit=str(row[0]),
        scope=str(row[1]),
        units=int(row[2]),
        held=int(held[0]),
        credited=int(row[3]),
        debited=int(row[4]),
        created_at=int(row[5]),
        updated_at=int(row[6]),
    )


@transaction
def credit(
    balance_id: bytes, payment_id: bytes, units: int, unit: str, scope: str, now: int
) -> Steps[Credit]:
    """Add `units` for one payment, opening the balance if need be; once per payment."""
    return (yield from credit_steps(balance_id, payment_id, units, unit, scope, now))


def credit_steps(
    balance_id: bytes, payment_id: bytes, units: int, unit: str, scope: str, now: int
) -> Steps[Credit]:
    """`credit`'s statements, for a transaction that credits along with other writes."""
    added = yield Execute(
        "INSERT INTO l402_balance_credits (payment_id, balance_id, units, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (payment_id) DO NOTHING",
        (payment_id, balance_id, units, now),
    )
    if added != 1:
        row = yield FetchOne(
            "SELECT balance_id FROM l402_balance_credits WHERE payment_id = ?", (payment_id,)
        )
        if row is None or bytes(row[0]) != balance_id:
            raise BalanceMismatch("this payment was credited to another balance")
        balance = yield from _read(balance_id, now)
        if balance is None:
            raise BalanceMismatch("this payment's balance is gone")
        return Credit(False, balance)
    row = yield FetchOne(
        "INSERT INTO l402_balances AS b (balance_id, unit, scope, units, credited, debited,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
        " ON CONFLICT (balance_id) DO UPDATE SET units = b.units + excluded.units,"
        " credited = b.credited + excluded.credited, updated_at = excluded.updated_at"
        " WHERE b.unit = excluded.unit AND b.scope = excluded.scope RETURNING units",
        (balance_id, unit, scope, units, units, now, now),
    )
    if row is None:  # the transaction is rolled back: the credit row goes too
        raise BalanceMismatch(f"the balance is not in {unit} for {scope}")
    balance = yield from _read(balance_id, now)
    assert balance is not None
    return Credit(True, balance)


@transaction
def reserve(
    balance_id: bytes,
    hold_id: bytes,
    estimate: int,
    minimum: int,
    unit: str,
    scope: str,
    now: int,
    expires_at: int,
    dialect: Dialect,
) -> Steps[Hold]:
    """Hold min(estimate, available) if at least `minimum` is available (see module doc)."""
    balance = yield from _read(balance_id, now, dialect.row_lock)
    if balance is None:
        return Hold(HoldStatus.UNKNOWN)
    if balance.unit != unit or balance.scope != scope:
        return Hold(HoldStatus.MISMATCH)
    available = balance.available
    if available < minimum:
        return Hold(HoldStatus.INSUFFICIENT, available=available)
    amount = min(estimate, available)
    yield Execute(
        "INSERT INTO l402_balance_holds (hold_id, balance_id, amount, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (hold_id, balance_id, amount, now, expires_at),
    )
    return Hold(HoldStatus.RESERVED, hold_id, amount, available - amount)


@transaction
def settle(
    balance_id: bytes, hold_id: bytes, actual: int, now: int, dialect: Dialect
) -> Steps[Settlement]:
    """Drop the reservation and debit min(actual, units no other live reservation holds)."""
    # The lock clause is one of the dialect's two constants; the id is bound.
    lock_units = "SELECT units FROM l402_balances WHERE balance_id = ?" + dialect.row_lock  # noqa: S608
    row = yield FetchOne(lock_units, (balance_id,))
    if row is None:
        return Settlement(SettleStatus.UNKNOWN)
    gone = yield FetchOne(
        "DELETE FROM l402_balance_holds WHERE hold_id = ? AND balance_id = ? RETURNING amount",
        (hold_id, balance_id),
    )
    if gone is None:
        return Settlement(SettleStatus.UNKNOWN)
    units = int(row[0])
    others = int((yield FetchOne(_HELD, (balance_id, now)))[0])
    debit = min(actual, max(0, units - others))
    if debit:
        yield Execute(
            "UPDATE l402_balances SET units = units - ?, debited = debited + ?, updated_at = ?"
            " WHERE balance_id = ?",
            (debit, debit, now, balance_id),
        )
    left = units - debit
    return Settlement(SettleStatus.SETTLED, debit, actual - debit, left, max(0, left - others))


@writes
def release(balance_id: bytes, hold_id: bytes) -> Steps[bool]:
    """Drop a reservation without debiting; False if it was not there any more."""
    deleted = yield Execute(
        "DELETE FROM l402_balance_holds WHERE hold_id = ? AND balance_id = ?",
        (hold_id, balance_id),
    )
    return bool(deleted == 1)


@reads
def get_balance(balance_id: bytes, now: int) -> Steps[Balance | None]:
    return (yield from _read(balance_id, now))


@writes
def sweep_holds(expired_before: int) -> Steps[int]:
    """Delete up to SWEEP_BATCH reservations that expired before `expired_before`."""
    deleted = yield Execute(
        "DELETE FROM l402_balance_holds WHERE hold_id IN"
        " (SELECT hold_id FROM l402_balance_holds WHERE expires_at <= ? LIMIT ?)",
        (expired_before, SWEEP_BATCH),
    )
    return int(deleted)
