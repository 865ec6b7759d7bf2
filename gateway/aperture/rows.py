"""Rows of Aperture's tables as read -> typed values, or the one reason a row is bad.

Pure: the readers (`sqlite_source`, `pg_source`) hand over each row as a
mapping of column -> Python value, where a value too large to read is an
`Oversized` marker instead of its content. Aperture's schema says what each
column must hold (BLOB hashes and keys of 32 bytes, integer ids and prices,
text names); SQLite stores whatever it is given, so every column is checked
here and the first problem found becomes one `BadRow`: table, row, column,
reason, with any text from the database escaped (gateway.aperture.shown).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.aperture.shown import shown

KEY_BYTES = 32  # Aperture's l402.SecretSize, and sha256 sizes
MAX_VALUE_BYTES = 64 * 1024  # no legitimate value in Aperture's tables comes near this
MAX_PRICE_SATS = 100_000 * 100_000_000  # Aperture's maxServicePrice
MAX_UNIX_SECONDS = 1 << 40  # year 36812: anything later is not a creation time

RawRow = Mapping[str, object]


class Oversized(NamedTuple):
    """A value larger than MAX_VALUE_BYTES, left unread (`size` in bytes when known)."""

    size: int | None


@dataclass(frozen=True)
class BadRow:
    """One row that cannot be used as it is: where, which column, why."""

    table: str
    row: str  # "id 7", or "rowid 7" when the id itself is unusable
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.table} {self.row}: {self.column}: {self.reason}"


class Problem(Exception):
    """Raised by the column checks below; turned into a BadRow by the row's reader."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{column}: {reason}")
        self.column = column
        self.reason = reason


@dataclass(frozen=True)
class SecretRow:
    """One root key as Aperture stored it (`secrets`)."""

    row: str
    key_id: bytes  # secrets.hash = sha256(identifier)
    root_key: bytes = field(repr=False)
    created_at: int | None  # unix seconds; None when unreadable (a warning, not a bad row)


@dataclass(frozen=True)
class TransactionRow:
    """What `l402_transactions` says about the token of one key (Aperture >= 0.4)."""

    row: str
    token_id: bytes
    payment_hash: bytes
    service: str
    price_sats: int
    state: str


@dataclass(frozen=True)
class ServiceRow:
    """A service defined through Aperture's admin API (its `services` table)."""

    row: str
    name: str
    path_regexp: str
    price: int


def describe(value: object) -> str:
    """What a value is, for a reason (text escaped and cut, never a blob's bytes)."""
    if value is None:
        return "NULL"
    if isinstance(value, Oversized):
        size = "" if value.size is None else f"{value.size} bytes, "
        return f"{size}over the {MAX_VALUE_BYTES}-byte read bound: not read"
    if isinstance(value, bytes):
        return f"a {len(value)}-byte blob"
    if isinstance(value, str):
        return f"text {shown(value)}"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"real {value!r}"
    return type(value).__name__


def row_label(row_key: int, row_key_name: str, raw_id: object) -> str:
    """`id N` when the row's id is an integer, else the reader's own key (`rowid N`)."""
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        return f"id {raw_id}"
    return f"{row_key_name} {row_key}"


def _value(row: RawRow, column: str) -> object:
    """The column's value; a value too large to read is a problem of its own."""
    value = row[column]
    if isinstance(value, Oversized):
        raise Problem(column, describe(value))
    return value


def _blob(row: RawRow, column: str, size: int = KEY_BYTES) -> bytes:
    value = _value(row, column)
    if isinstance(value, bytes) and len(value) == size:
        return value
    if isinstance(value, bytes):
        raise Problem(column, f"{len(value)} bytes, expected {size}")
    raise Problem(column, f"{describe(value)}, expected a {size}-byte blob")


def _integer(row: RawRow, column: str, what: str = "an integer") -> int:
    value = _value(row, column)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Problem(column, f"{describe(value)}, expected {what}")


def _text(row: RawRow, column: str) -> str:
    value = _value(row, column)
    if not isinstance(value, str):
        raise Problem(column, f"{describe(value)}, expected text")
    if not _valid_utf8(value):
        raise Problem(column, f"{describe(value)}: not valid UTF-8")
    return value


def _valid_utf8(text: str) -> bool:
    """False when the reader kept undecodable bytes as surrogates (surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _price(row: RawRow, column: str) -> int:
    price = _integer(row, column, "a whole number of satoshis")
    if not 0 <= price <= MAX_PRICE_SATS:
        raise Problem(column, f"{price} is not a price Aperture accepts (0 to {MAX_PRICE_SATS})")
    return price


def _id(row: RawRow) -> None:
    _integer(row, "id")


def secret_row(label: str, row: RawRow) -> tuple[SecretRow, str | None]:
    """The key of a `secrets` row, and a warning (unreadable created_at); raises Problem."""
    _id(row)
    key_id = _blob(row, "hash")
    root_key = _blob(row, "secret")
    created_at = parse_timestamp(row["created_at"])
    warning = None
    if created_at is None:
        warning = f"created_at: {describe(row['created_at'])}: not a timestamp"
    return SecretRow(label, key_id, root_key, created_at), warning


def transaction_row(label: str, row: RawRow, key_id: bytes) -> TransactionRow:
    """The `l402_transactions` row found for `key_id`; raises Problem."""
    _id(row)
    token_id = _blob(row, "token_id")
    payment_hash = _blob(row, "payment_hash")
    if expected_key_id(payment_hash, token_id) != key_id:
        raise Problem(
            "payment_hash",
            "with token_id it does not give the key id of its secrets row "
            "(sha256 of the identifier)",
        )
    service = _text(row, "service_name")
    price = _price(row, "price_sats")
    state = _text(row, "state")
    return TransactionRow(label, token_id, payment_hash, service, price, state)


def service_row(label: str, row: RawRow) -> ServiceRow:
    """A `services` row; raises Problem."""
    _id(row)
    return ServiceRow(label, _text(row, "name"), _text(row, "path_regexp"), _price(row, "price"))


def checked(table: str, label: str, problem: Problem) -> BadRow:
    return BadRow(table, label, problem.column, problem.reason)


def expected_key_id(payment_hash: bytes, token_id: bytes) -> bytes:
    """sha256 of the version-0 identifier: what `secrets.hash` must be for this token."""
    return hashlib.sha256(b"\x00\x00" + payment_hash + token_id).digest()


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"\s*(Z|[+-]\d\d:?\d\d)?(?:\s+[A-Z]{1,5})?"
)


def parse_timestamp(value: object) -> int | None:
    """Unix seconds from what Aperture's drivers stored (UTC when no zone is given)."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < MAX_UNIX_SECONDS else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or len(value) > 64:
        return None
    m = _TIMESTAMP.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    zone = m.group(8)
    offset = dt.timedelta(0)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if zone[0] == "-":
            offset = -offset
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone(offset))
    except ValueError:
        return None
    return int(moment.timestamp())
