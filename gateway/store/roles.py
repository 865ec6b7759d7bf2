"""The store's roles: one small Protocol per consumer, as Aperture splits its
`SecretStore` from its `TransactionStore`.

Each consumer depends only on the role it uses (the authenticator reads root
keys, the handler leases single-use tokens, the settlement follower books
revenue, the pruner deletes unpaid rows, ...). The SQLite and PostgreSQL
adapters implement every role; `Store` is that whole surface, which only the
code that opens and closes a store needs.

Every method raises `StoreError` when the database fails or does not answer
within the store's deadline; none of them logs a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.l402.records import TokenRecord
from gateway.store.types import (
    Balance,
    Booking,
    Consumed,
    Credit,
    Hold,
    ImportedKey,
    ImportedKeyRef,
    ImportOutcome,
    Minted,
    PruneCandidate,
    ReportRow,
    Reservation,
    Roll,
    SessionAction,
    SessionCredit,
    SessionInfo,
    SessionRow,
    SettledInvoice,
    Settlement,
    StoredAnswer,
    TokenInfo,
)

if TYPE_CHECKING:  # annotations only: loading a config must not import the meter
    from gateway.metering.limits import RateRule


class LeaderLock(Protocol):
    """A named lock at most one process holds; released when its holder dies."""

    @property
    def name(self) -> str: ...

    async def try_acquire(self) -> bool:
        """Take the lock if it is free (never waits); True when this process holds it."""
        ...

    async def still_held(self) -> bool:
        """False when the lock may have been lost (connection gone, file replaced)."""
        ...

    async def release(self) -> None:
        """Give the lock up (idempotent); a later `try_acquire` may take it again."""
        ...


class TokenSink(Protocol):
    """Where the mint keeps each new token (core's `RootKeyStore`)."""

    async def put_token(self, record: TokenRecord) -> None: ...


class RootKeys(Protocol):
    """Root-key lookup for verification (tokens minted here or imported from Aperture)."""

    async def get_root_key(self, key_id: bytes) -> bytes | None: ...


class Revocations(Protocol):
    async def revoke(self, token_id_hex: str) -> bool:
        """Delete the root key of the token with this id; False if unknown or already revoked."""
        ...


class KeyImporter(Protocol):
    """Root keys sold by another gateway (Aperture's `secrets` table)."""

    async def import_root_key(self, key: ImportedKey) -> bool:
        """True when newly imported, False when the same key was already there.

        Raises StoreError when a *different* root key is stored for `key.key_id`.
        """
        ...

    async def import_root_keys(self, keys: Sequence[ImportedKey]) -> list[ImportOutcome]:
        """Import a batch in one transaction: one outcome per key, in order.

        Conflicts are outcomes here, not errors; StoreError means the database
        failed and nothing of this batch was written.
        """
        ...


class ImportedRevocations(Protocol):
    """Revocations made at the source after an import (`import-aperture --sync-revocations`)."""

    async def live_imported_keys(
        self, source: str, *, after: bytes | None = None, limit: int = 1000
    ) -> list[ImportedKeyRef]:
        """Imported keys of `source` not revoked here, by key id; `after` continues."""
        ...

    async def revoke_imported_keys(self, key_ids: Sequence[bytes]) -> int:
        """Delete these imported root keys, in one transaction; the count revoked now."""
        ...


class Leases(Protocol):
    """Single-use (`per-request`) tokens: lease, then commit or release."""

    async def reserve(self, key_id: bytes, now: int, lease_seconds: int) -> Reservation:
        """Lease an unused single-use token until `now + lease_seconds`, if no live lease holds it.

        A lease that ran out (`lease_until <= now`) is taken over with a new lease id.
        """
        ...

    async def commit(self, key_id: bytes, lease_id: bytes, now: int) -> bool:
        """Mark the token used if `lease_id` is still its current lease (even if expired).

        False: already used, or the lease was released or taken over by another holder.
        """
        ...

    async def release(self, key_id: bytes, lease_id: bytes) -> bool:
        """Drop the lease if `lease_id` is still the current one; False if it was not."""
        ...


class SettlementLedger(Protocol):
    """Revenue booked from LND settlements (the settlement follower and reconcile)."""

    async def route_for_payment_hash(self, payment_hash: bytes) -> str | None: ...

    async def minted(self, payment_hash: bytes) -> Minted | None: ...

    async def record_settlement(self, invoice: SettledInvoice, *, advance: bool = True) -> bool:
        """Book one settled invoice; False when it was booked before (idempotent).

        `advance` also moves the resume index (`last_settle_index`) up to the
        invoice's settle index. Only bookings made in settle-index order (the
        live subscription) may advance it: an index past an unbooked settlement
        would skip that settlement on every later resume.
        """
        ...

    async def last_settle_index(self) -> int:
        """Where the subscription resumes; 0 when nothing was booked in order yet."""
        ...

    async def first_token_created_at(self) -> int | None: ...

    async def booking_status(self, payment_hashes: Sequence[bytes]) -> dict[bytes, Booking]:
        """Of these payment hashes, those minted here -> (route, settlement already booked)."""
        ...


class UsageLedger(Protocol):
    """Paid-request counts per route and day, and the revenue report built on them."""

    async def add_paid_requests(self, route: str, day: str, count: int) -> None: ...

    async def revenue_report(
        self, days: int | None = None, *, now: int | None = None
    ) -> list[ReportRow]: ...


class PruneStore(Protocol):
    async def prune_candidates(
        self, created_before: int, limit: int, *, after: tuple[int, bytes] | None = None
    ) -> list[PruneCandidate]:
        """Unsettled, unused rows created before `created_before`, oldest first.

        `after` = (created_at, key_id) of the last row seen continues a scan.
        """
        ...

    async def delete_tokens(self, key_ids: Sequence[bytes]) -> int:
        """Delete those of `key_ids` still prunable, in one transaction; return the count."""
        ...


class TokenCatalog(Protocol):
    """Read-only views of tokens for operators (CLI and admin API)."""

    async def list_tokens(
        self,
        *,
        route: str | None = None,
        limit: int = 100,
        before: tuple[int, bytes] | None = None,
    ) -> list[TokenInfo]:
        """Newest first by (created_at, token_id).

        `before` = (created_at, token_id) of the last row seen continues a
        listing (created_at alone would skip tokens minted in the same second).
        """
        ...

    async def find_token(self, token_id_or_hash: bytes) -> TokenInfo | None:
        """By token id (32 bytes) or payment hash (32 bytes)."""
        ...


class RateBuckets(Protocol):
    """Challenge rate-limit buckets shared by every gateway on the database."""

    async def take_token(
        self, client: str, now: float, per_minute: int, burst: int
    ) -> float | None:
        """Take one token from `client`'s bucket: None when taken, else seconds to wait."""
        ...

    async def bucket_wait(
        self, client: str, now: float, per_minute: int, burst: int
    ) -> float | None:
        """Read only: seconds until `client`'s bucket has a token, None when it has one."""
        ...

    async def sweep_buckets(self, now: float) -> int:
        """Delete a bounded batch of buckets that are full again; the count deleted."""
        ...

    async def forget_challenge_buckets(self) -> int:
        """Delete every challenge bucket (a limit turned off forgets every client)."""
        ...


class Balances(Protocol):
    """Prepaid balances metered per request (bundles, count quotas, session deposits).

    Units are integers in the balance's `unit` (`tokens`, `requests`,
    `bytes`, `msat`, ...); `scope` names what may spend it (the route, say).
    Every call is atomic across processes and replicas; the balance never
    goes negative (see gateway.store.balances).
    """

    async def credit_units(
        self,
        balance_id: bytes,
        payment_id: bytes,
        units: int,
        *,
        unit: str,
        scope: str,
        now: int,
    ) -> Credit:
        """Credit one payment's units, opening the balance on its first credit.

        Idempotent per `payment_id`: the same payment again adds nothing
        (`credited` False). Raises BalanceMismatch when the balance exists in
        another unit or scope, or the payment was credited to another balance.
        """
        ...

    async def reserve_units(
        self,
        balance_id: bytes,
        estimate: int,
        *,
        unit: str,
        scope: str,
        now: int,
        ttl: int,
        minimum: int | None = None,
    ) -> Hold:
        """Hold min(estimate, available) until `now + ttl`, if at least `minimum` is available.

        `minimum` None = the whole estimate (all or nothing). Live holds of
        other requests count against what is available; expired ones do not.
        """
        ...

    async def settle_units(
        self, balance_id: bytes, hold_id: bytes, actual: int, *, now: int
    ) -> Settlement:
        """End the reservation and debit min(actual, what no other live hold holds).

        A second settle (or a settle after release or sweep) is UNKNOWN and
        debits nothing.
        """
        ...

    async def release_units(self, balance_id: bytes, hold_id: bytes) -> bool:
        """End the reservation without a debit; False if it was gone."""
        ...

    async def roll_units(
        self,
        balance_id: bytes,
        old_hold_id: bytes | None,
        *,
        debit: int,
        keep: int,
        want: int,
        minimum: int,
        unit: str,
        scope: str,
        now: int,
        ttl: int,
        share: int | None = None,
    ) -> Roll:
        """Settle `old_hold_id` (debit at most `debit`, never from other live reservations)
        and, in the same transaction, hold `keep` plus min(want, the rest available) if at
        least `minimum` of it is (else `keep` alone): one process's allotment moving on.
        `share`: take at most half of what is left beyond `keep`, but `share` if more."""
        ...

    async def extend_units(self, balance_id: bytes, hold_id: bytes, *, now: int, ttl: int) -> bool:
        """Keep a live reservation for `ttl` more seconds (an answer still streaming); False
        when it has expired or is gone (it is then settled from what is left)."""
        ...

    async def get_balance(self, balance_id: bytes, *, now: int) -> Balance | None: ...

    async def outstanding_units(self) -> list[tuple[str, str, int]]:
        """(scope, unit, units left) per scope and unit, summed over every balance."""
        ...

    async def sweep_holds(self, now: int) -> int:
        """Delete a bounded batch of reservations expired over an hour ago; the count."""
        ...


class RequestLimits(Protocol):
    """Per-credential request rate limits, shared by every gateway on the store."""

    async def take_request_tokens(
        self, keys: Sequence[str], rules: Sequence[RateRule], now: float
    ) -> float | None:
        """A token from each key's bucket (rules[i] for keys[i]) or none: None, else the wait."""
        ...


class Allowances(Protocol):
    """Counted allowances per key and period (freebies), shared by every gateway."""

    async def take_allowance(
        self, key: str, period: int, limit: int, *, expires_at: int
    ) -> int | None:
        """Use one: the count used including this one, or None when `limit` are used."""
        ...

    async def return_allowance(self, key: str, period: int) -> bool: ...

    async def sweep_allowances(self, now: int) -> int:
        """Delete a bounded batch of rows whose period ended; the count."""
        ...


class Leadership(Protocol):
    def leader_lock(self, name: str) -> LeaderLock:
        """A named lock at most one process on this store holds (see gateway.jobs.leadership)."""
        ...


class HealthProbe(Protocol):
    async def check_writable(self) -> None: ...


class PaymentSessions(Protocol):
    """The Payment scheme's server secret, sessions and kept answers (gateway.store.sessions)."""

    async def server_secret(self, name: str, candidate: bytes) -> bytes:
        """The named secret, created from `candidate` by whichever process asks first."""
        ...

    async def open_session(
        self, action: SessionAction, return_invoice: str, unit_msat: int, answer: StoredAnswer
    ) -> Consumed: ...

    async def top_up_session(self, action: SessionAction, answer: StoredAnswer) -> Consumed: ...

    async def get_session(self, session_id: bytes) -> SessionRow | None: ...

    async def touch_session(self, session_id: bytes, now: int) -> None: ...

    async def close_session(self, session_id: bytes, reason: str, now: int) -> SessionRow | None:
        """Closed now with its refund owed; None when it was not open."""
        ...

    async def claim_refund(self, session_id: bytes, now: int, claim_until: int) -> bool: ...

    async def finish_refund(
        self, session_id: bytes, succeeded: bool, fee_msat: int | None, note: str | None
    ) -> bool: ...

    async def replayed_answer(self, challenge_id: str, now: int) -> StoredAnswer | None: ...

    async def keep_answer(
        self, challenge_id: str, answer: StoredAnswer, expires_at: int
    ) -> bool: ...

    async def idle_sessions(self, last_activity_before: int, limit: int) -> list[bytes]: ...

    async def unpaid_refunds(self, now: int, limit: int) -> list[bytes]: ...

    async def sweep_answers(self, now: int) -> int: ...

    async def count_open_sessions(self) -> int: ...


class SessionCatalog(Protocol):
    """Read-only views of Payment-scheme sessions for operators (admin API, CLI)."""

    async def list_sessions(
        self,
        status: str | None = None,
        limit: int = 100,
        *,
        route: str | None = None,
        refund_state: str | None = None,
        before: tuple[int, bytes] | None = None,
    ) -> list[SessionInfo]:
        """Newest first by (opened_at, session_id); each filter applies when given.

        `before` = (opened_at, session_id) of the last row seen continues a listing.
        """
        ...

    async def find_session(self, session_id: bytes) -> SessionInfo | None: ...

    async def session_credits(self, session_id: bytes) -> list[SessionCredit]:
        """The deposit and every top-up credited to it, oldest first."""
        ...


class Store(
    TokenSink,
    RootKeys,
    Revocations,
    KeyImporter,
    ImportedRevocations,
    Leases,
    SettlementLedger,
    UsageLedger,
    PruneStore,
    TokenCatalog,
    RateBuckets,
    Balances,
    RequestLimits,
    Allowances,
    PaymentSessions,
    SessionCatalog,
    Leadership,
    HealthProbe,
    Protocol,
):
    """Every role at once: what `open_store` returns and its owner closes."""

    @property
    def shares_rate_limits(self) -> bool:
        """True when gateways on this store share challenge allowances (SQL stores: both)."""
        ...

    async def close(self) -> None: ...
