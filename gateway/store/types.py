"""Values that cross the store's boundary (no database imports here)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class StoreError(Exception):
    """The database failed, refused an operation, or did not answer in time."""


class ReserveResult(StrEnum):
    RESERVED = "reserved"
    ALREADY_USED = "already_used"
    IN_USE = "in_use"  # another holder's lease has not expired yet
    UNKNOWN = "unknown"  # no such token, or revoked


class Reservation(NamedTuple):
    """What `reserve` did; `lease_id` (opaque) is set only when `result` is RESERVED.

    The lease id names this one lease: `commit` and `release` act only while it
    is still the token's current lease, so a holder whose lease expired and was
    taken over by another request can neither consume nor free the token.
    """

    result: ReserveResult
    lease_id: bytes | None = None


LEASE_ID_BYTES = 16


def new_lease_id() -> bytes:
    """A fresh random lease id: unguessable, so no other holder can present it."""
    return secrets.token_bytes(LEASE_ID_BYTES)


@dataclass(frozen=True)
class ReportRow:
    day: str  # YYYY-MM-DD, UTC
    route: str
    settled_invoices: int
    revenue_msat: int
    paid_requests: int


class PruneCandidate(NamedTuple):
    """A token row that may be pruned if LND confirms its invoice is canceled.

    `created_at` rides along so callers can page past rows they keep
    (`after=(created_at, key_id)`) instead of re-reading them every round.
    """

    key_id: bytes
    payment_hash: bytes
    created_at: int


@dataclass(frozen=True)
class SettledInvoice:
    """One settled invoice as the ledger books it."""

    payment_hash: bytes
    route: str
    amt_paid_msat: int
    settle_index: int
    settled_at: int  # unix seconds
    scheme: str = "l402"  # not stored: what the revenue metric is labelled with


@dataclass(frozen=True)
class ImportedKey:
    """A root key sold by another gateway (Aperture), keyed like ours: sha256(identifier).

    `token_id`, `payment_hash`, `service` and `price_msat` are known only when
    the source recorded them (Aperture's `l402_transactions`, whose `price_sats`
    times 1000 is `price_msat`); `root_key` is secret.
    """

    key_id: bytes
    root_key: bytes = field(repr=False)
    created_at: int
    source: str
    token_id: bytes | None = None
    payment_hash: bytes | None = None
    service: str | None = None
    price_msat: int | None = None


class ImportOutcome(StrEnum):
    """What importing one key did (gateway.store.imports)."""

    IMPORTED = "imported"
    PRESENT = "present"  # the same root key was already there
    REVOKED = "revoked"  # revoked here: stays revoked, not compared
    CONFLICT_MINTED = "conflict_minted"  # a token minted here has a different root key
    CONFLICT_IMPORTED = "conflict_imported"  # an earlier import stored a different root key

    @property
    def conflict(self) -> bool:
        return self in (ImportOutcome.CONFLICT_MINTED, ImportOutcome.CONFLICT_IMPORTED)


class ImportedKeyRef(NamedTuple):
    """An imported key that is not revoked here: its key id, and its token id when known."""

    key_id: bytes
    token_id: bytes | None


@dataclass(frozen=True)
class TokenInfo:
    """What an operator may see of a token: never its root key."""

    token_id: bytes
    payment_hash: bytes
    route: str
    price_msat: int
    single_use: bool
    created_at: int
    valid_until: int | None
    revoked_at: int | None
    used_at: int | None
    settled_at: int | None
    amt_paid_msat: int | None
    imported: bool = False

    @property
    def token_id_hex(self) -> str:
        return self.token_id.hex()


# --- metered balances (schema v3) -------------------------------------------------------

HOLD_ID_BYTES = 16


def new_hold_id() -> bytes:
    """A fresh random reservation id: only the request that holds it can settle it."""
    return secrets.token_bytes(HOLD_ID_BYTES)


class BalanceMismatch(StoreError):
    """A balance was asked for in a unit or scope it does not have (a credit or a
    payment credited to another balance): a configuration change or a bug, never
    a buyer's doing."""


@dataclass(frozen=True)
class Balance:
    """A prepaid balance; `units` is what is left, `held` what live reservations hold."""

    balance_id: bytes
    unit: str
    scope: str
    units: int
    held: int
    credited: int
    debited: int
    created_at: int
    updated_at: int

    @property
    def available(self) -> int:
        """What a new request may still reserve."""
        return max(0, self.units - self.held)


class Credit(NamedTuple):
    """`credited` False: this payment was credited before (nothing added this time)."""

    credited: bool
    balance: Balance


class HoldStatus(StrEnum):
    RESERVED = "reserved"
    INSUFFICIENT = "insufficient"  # less available than the minimum asked
    UNKNOWN = "unknown"  # no balance with this id
    MISMATCH = "mismatch"  # the balance has another unit or scope


class Hold(NamedTuple):
    """What `reserve_units` did.

    RESERVED: `hold_id` names the reservation, `amount` is what it holds
    (the estimate, or less when `minimum` allowed a partial hold) and
    `available` what is left for other requests. Otherwise `hold_id` is None,
    `amount` 0 and `available` what could have been reserved.
    """

    status: HoldStatus
    hold_id: bytes | None = None
    amount: int = 0
    available: int = 0


class SettleStatus(StrEnum):
    SETTLED = "settled"
    UNKNOWN = "unknown"  # no such reservation: settled or released already, or swept


class Settlement(NamedTuple):
    """What `settle_units` debited.

    `debited` = min(actual, what the balance could pay without touching other
    live reservations); `shortfall` = actual - debited (usage nobody pays
    for: the answer used more than the balance had); `units` and `available`
    are the balance after the debit.
    """

    status: SettleStatus
    debited: int = 0
    shortfall: int = 0
    units: int = 0
    available: int = 0


class SessionConflict(StoreError):
    """A session that should not exist yet does (its deposit row was consumed without it)."""


@dataclass(frozen=True)
class StoredAnswer:
    """The answer to a consumed Payment challenge, replayed to a retried credential."""

    status: int
    body: str


@dataclass(frozen=True)
class SessionAction:
    """An open or a top-up: the challenge it consumes and the payment it credits."""

    challenge_id: str
    session_id: bytes
    payment_hash: bytes  # of the deposit or top-up invoice (its token row's key id)
    route: str
    amount_msat: int
    now: int
    keep_until: int  # keep the answer for retries until then


@dataclass(frozen=True)
class Consumed:
    """What an open or top-up did: `answer` (done now), `replayed` (done before, for this
    same challenge), or `refused` (a reason; `closed` when the session is closed)."""

    answer: StoredAnswer | None = None
    replayed: StoredAnswer | None = None
    refused: str | None = None
    closed: bool = False


@dataclass(frozen=True)
class SessionRow:
    """A session as stored; balances in msat (`balance_msat` left, `held_msat` reserved)."""

    session_id: bytes
    route: str
    unit_msat: int
    return_invoice: str = field(repr=False)
    status: str
    opened_at: int
    last_activity: int
    closed_at: int | None
    close_reason: str | None
    refund_msat: int | None
    refund_state: str | None
    refund_claim_until: int | None
    refund_fee_msat: int | None
    refund_note: str | None
    balance_msat: int
    held_msat: int

    @property
    def available_msat(self) -> int:
        return max(0, self.balance_msat - self.held_msat)


@dataclass(frozen=True)
class SessionInfo:
    """A session for an operator (admin API, CLI): the row plus what its balance saw.

    `credited_msat` is every deposit and top-up; `debited_msat` what requests
    spent plus the refund taken at the close (`spent_msat` leaves it out).
    """

    session: SessionRow
    credited_msat: int
    debited_msat: int

    @property
    def spent_msat(self) -> int:
        return max(0, self.debited_msat - (self.session.refund_msat or 0))


@dataclass(frozen=True)
class SessionCredit:
    """One payment credited to a session: its deposit, or a top-up."""

    payment_hash: bytes
    amount_msat: int
    credited_at: int


class Minted(NamedTuple):
    """Which route, and which scheme (l402, charge, session), an invoice was minted for."""

    route: str
    scheme: str


class Booking(NamedTuple):
    route: str
    scheme: str
    booked: bool  # its settlement is in the ledger already
