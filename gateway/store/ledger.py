"""Ledger operations: settlements booked from LND, paid-request counts, the revenue report.

`l402_settle_state.last_settle_index` is where the settlement follower resumes
its subscription. It must never pass a settlement that is not booked, so only
bookings made in settle-index order (the live subscription) advance it;
catch-up listings and reconcile book with `advance=False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from gateway.store.steps import (
    Execute,
    FetchAll,
    FetchOne,
    Row,
    Steps,
    chunks,
    placeholders,
    reads,
    transaction,
    writes,
)
from gateway.store.types import Booking, Minted, ReportRow, SettledInvoice

IN_LIST_MAX = 500


@reads
def route_for_payment_hash(payment_hash: bytes) -> Steps[str | None]:
    minted = yield from _minted(payment_hash)
    return None if minted is None else minted.route


def _minted(payment_hash: bytes) -> Steps[Minted | None]:
    row = yield FetchOne(
        "SELECT route, scheme FROM l402_tokens WHERE payment_hash = ? LIMIT 1", (payment_hash,)
    )
    return None if row is None else Minted(str(row[0]), str(row[1]))


@reads
def minted(payment_hash: bytes) -> Steps[Minted | None]:
    """The route and scheme (l402, charge, session) an invoice was minted for, if ours."""
    return (yield from _minted(payment_hash))


@transaction
def record_settlement(invoice: SettledInvoice, advance: bool) -> Steps[bool]:
    added = yield Execute(
        "INSERT INTO l402_settlements (payment_hash, route, amt_paid_msat, settle_index,"
        " settled_at, day) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (payment_hash) DO NOTHING",
        (
            invoice.payment_hash,
            invoice.route,
            invoice.amt_paid_msat,
            invoice.settle_index,
            invoice.settled_at,
            utc_day(invoice.settled_at),
        ),
    )
    if advance:
        yield Execute(
            "INSERT INTO l402_settle_state (id, last_settle_index) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET last_settle_index = CASE"
            " WHEN excluded.last_settle_index > l402_settle_state.last_settle_index"
            " THEN excluded.last_settle_index ELSE l402_settle_state.last_settle_index END",
            (invoice.settle_index,),
        )
    return bool(added == 1)


@reads
def last_settle_index() -> Steps[int]:
    row = yield FetchOne("SELECT last_settle_index FROM l402_settle_state")
    return 0 if row is None else int(row[0])


@reads
def first_token_created_at() -> Steps[int | None]:
    row = yield FetchOne("SELECT min(created_at) FROM l402_tokens")
    return None if row is None or row[0] is None else int(row[0])


@reads
def booking_status(payment_hashes: Sequence[bytes]) -> Steps[dict[bytes, Booking]]:
    """Of these payment hashes, those minted here: hash -> (route, scheme, already booked)."""
    found: dict[bytes, Booking] = {}
    for part in chunks(list(dict.fromkeys(payment_hashes)), IN_LIST_MAX):
        rows = yield FetchAll(
            "SELECT t.payment_hash, t.route, t.scheme, EXISTS"  # noqa: S608 (placeholders only)
            " (SELECT 1 FROM l402_settlements s WHERE s.payment_hash = t.payment_hash)"
            f" FROM l402_tokens t WHERE t.payment_hash IN {placeholders(len(part))}",
            tuple(part),
        )
        found.update((bytes(h), Booking(str(r), str(s), bool(b))) for h, r, s, b in rows)
    return found


@writes
def add_paid_requests(route: str, day: str, count: int) -> Steps[None]:
    yield Execute(
        "INSERT INTO l402_paid_requests (day, route, count) VALUES (?, ?, ?)"
        " ON CONFLICT (day, route) DO UPDATE"
        " SET count = l402_paid_requests.count + excluded.count",
        (day, route, count),
    )


@reads
def revenue_report(first_day: str) -> Steps[list[ReportRow]]:
    settled = yield FetchAll(
        "SELECT day, route, count(*), sum(amt_paid_msat) FROM l402_settlements"
        " WHERE day >= ? GROUP BY day, route",
        (first_day,),
    )
    paid = yield FetchAll(
        "SELECT day, route, count FROM l402_paid_requests WHERE day >= ?", (first_day,)
    )
    return merge_report(settled, paid)


def merge_report(settled: Sequence[Row], paid: Sequence[Row]) -> list[ReportRow]:
    """Join (day, route, invoices, msat) with (day, route, requests), sorted by day, route."""
    rows: dict[tuple[str, str], list[int]] = {}
    for day, route, invoices, msat in settled:
        rows.setdefault((str(day), str(route)), [0, 0, 0])[:2] = [int(invoices), int(msat)]
    for day, route, requests in paid:
        rows.setdefault((str(day), str(route)), [0, 0, 0])[2] = int(requests)
    return [ReportRow(d, r, *v) for (d, r), v in sorted(rows.items())]


def utc_day(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def check_day(day: str) -> str:
    """Reject anything but a real YYYY-MM-DD date (raises ValueError)."""
    try:
        valid = len(day) == 10 and date.fromisoformat(day).isoformat() == day
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
    return day


def first_report_day(days: int | None, now: int) -> str:
    """Oldest day included in a report of the last `days` UTC days (today counts)."""
    if days is None:
        return "0000-00-00"
    if days < 1:
        raise ValueError("days must be >= 1")
    today = datetime.fromtimestamp(now, UTC).date()
    return (today - timedelta(days=days - 1)).isoformat()
