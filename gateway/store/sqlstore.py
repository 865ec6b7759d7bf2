"""The store, written once over any backend that can drive an `Op`.

`SqlStore` implements every role of `gateway.store.roles` by building the
operation (`tokens`, `ledger`, `catalog`, `prune`, `buckets`, `schema`) and
handing it to its `Driver`. A driver owns connections, threads, transactions
and deadlines, and turns database errors into StoreError; it knows no SQL but
its dialect's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol, TypeVar

from gateway.l402.records import TokenRecord
from gateway.metering.limits import RateRule
from gateway.store import (
    allowances,
    balances,
    buckets,
    catalog,
    imports,
    ledger,
    prune,
    schema,
    session_catalog,
    sessions,
    tokens,
)
from gateway.store.dialect import Dialect
from gateway.store.roles import LeaderLock
from gateway.store.steps import Op
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
    SessionAction,
    SessionCredit,
    SessionInfo,
    SessionRow,
    SettledInvoice,
    Settlement,
    StoredAnswer,
    StoreError,
    TokenInfo,
    new_hold_id,
    new_lease_id,
)

T = TypeVar("T")

OPEN_TIMEOUT = 10.0  # reading the schema version at start-up
MIGRATION_TIMEOUT = 120.0  # version 2 builds an index on l402_tokens, which may be large


class Driver(Protocol):
    """Connection and transaction code for one database (see gateway.store.steps.Kind)."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def description(self) -> str:
        """Where the data lives, safe to log (never a password)."""
        ...

    async def run(self, op: Op[T], *, timeout: float | None = None) -> T:
        """Drive `op` within the store's deadline (or `timeout`); StoreError on any failure."""
        ...

    def leader_lock(self, name: str) -> LeaderLock: ...

    async def close(self) -> None: ...


MAX_UNITS = 2**62  # bigint with room to add (gateway.metering.terms.MAX_UNITS)


def _check_units(name: str, value: int, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_UNITS:
        raise ValueError(f"{name} must be an integer from {low} to {MAX_UNITS}")


def _check_ids(*ids: bytes) -> None:
    for ident in ids:
        if not 1 <= len(ident) <= 64:
            raise ValueError("balance and payment ids are 1 to 64 bytes")


class SqlStore:
    """Every store role over one driver (SQLite or PostgreSQL)."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._closed = False

    @classmethod
    async def open(cls, driver: Driver) -> SqlStore:
        """Create or migrate the schema (skipping the write lock when it is current)."""
        store = cls(driver)
        try:
            found = await driver.run(schema.schema_version(driver.dialect), timeout=OPEN_TIMEOUT)
            if not schema.check_version(found):
                await driver.run(schema.migrate(driver.dialect), timeout=MIGRATION_TIMEOUT)
        except BaseException:
            await driver.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"SqlStore({self._driver.description})"

    @property
    def dialect(self) -> Dialect:
        return self._driver.dialect

    @property
    def shares_rate_limits(self) -> bool:
        """Both dialects: every worker and replica on the database draws from one allowance
        per client. On SQLite a refused request costs a read only (`bucket_wait`), so a
        flood does not turn into a write lock and an fsync per request."""
        return True

    async def _run(self, op: Op[T]) -> T:
        if self._closed:
            op.steps.close()
            raise StoreError("store is closed")
        return await self._driver.run(op)

    # TokenSink, RootKeys, Revocations, KeyImporter, Leases
    async def put_token(self, record: TokenRecord) -> None:
        await self._run(tokens.put_token(record))

    async def get_root_key(self, key_id: bytes) -> bytes | None:
        return await self._run(tokens.get_root_key(key_id))

    async def revoke(self, token_id_hex: str) -> bool:
        token_id = tokens.parse_token_id(token_id_hex)
        return await self._run(tokens.revoke(token_id, int(time.time())))

    async def import_root_key(self, key: ImportedKey) -> bool:
        (outcome,) = await self.import_root_keys([key])
        if outcome.conflict:
            where = (
                "a token minted by this gateway"
                if outcome is ImportOutcome.CONFLICT_MINTED
                else "an earlier import"
            )
            raise StoreError(
                f"refusing to import key {key.key_id.hex()}: {where} holds a different root key"
                " for it"
            )
        return outcome is ImportOutcome.IMPORTED

    async def import_root_keys(self, keys: Sequence[ImportedKey]) -> list[ImportOutcome]:
        if not keys:
            return []
        if len(keys) > imports.MAX_BATCH:
            raise ValueError(f"at most {imports.MAX_BATCH} keys per batch")
        if any(len(k.key_id) != 32 or len(k.root_key) != 32 for k in keys):
            raise ValueError("imported key ids and root keys are 32 bytes")
        return await self._run(imports.import_root_keys(keys, int(time.time())))

    # ImportedRevocations
    async def live_imported_keys(
        self, source: str, *, after: bytes | None = None, limit: int = 1000
    ) -> list[ImportedKeyRef]:
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        return await self._run(imports.live_imported_keys(source, after, limit))

    async def revoke_imported_keys(self, key_ids: Sequence[bytes]) -> int:
        if not key_ids:
            return 0
        if len(key_ids) > imports.MAX_BATCH:
            raise ValueError(f"at most {imports.MAX_BATCH} keys per batch")
        return await self._run(imports.revoke_imported_keys(key_ids, int(time.time())))

    async def reserve(self, key_id: bytes, now: int, lease_seconds: int) -> Reservation:
        return await self._run(tokens.reserve(key_id, now, lease_seconds, new_lease_id()))

    async def commit(self, key_id: bytes, lease_id: bytes, now: int) -> bool:
        return await self._run(tokens.commit(key_id, lease_id, now))

    async def release(self, key_id: bytes, lease_id: bytes) -> bool:
        return await self._run(tokens.release(key_id, lease_id))

    # SettlementLedger, UsageLedger
    async def route_for_payment_hash(self, payment_hash: bytes) -> str | None:
        return await self._run(ledger.route_for_payment_hash(payment_hash))

    async def minted(self, payment_hash: bytes) -> Minted | None:
        return await self._run(ledger.minted(payment_hash))

    async def record_settlement(self, invoice: SettledInvoice, *, advance: bool = True) -> bool:
        return await self._run(ledger.record_settlement(invoice, advance))

    async def last_settle_index(self) -> int:
        return await self._run(ledger.last_settle_index())

    async def first_token_created_at(self) -> int | None:
        return await self._run(ledger.first_token_created_at())

    async def booking_status(self, payment_hashes: Sequence[bytes]) -> dict[bytes, Booking]:
        if not payment_hashes:
            return {}
        return await self._run(ledger.booking_status(payment_hashes))

    async def add_paid_requests(self, route: str, day: str, count: int) -> None:
        ledger.check_day(day)
        if count:
            await self._run(ledger.add_paid_requests(route, day, count))

    async def revenue_report(
        self, days: int | None = None, *, now: int | None = None
    ) -> list[ReportRow]:
        first = ledger.first_report_day(days, int(time.time()) if now is None else now)
        return await self._run(ledger.revenue_report(first))

    # PruneStore
    async def prune_candidates(
        self, created_before: int, limit: int, *, after: tuple[int, bytes] | None = None
    ) -> list[PruneCandidate]:
        return await self._run(prune.prune_candidates(created_before, limit, after))

    async def delete_tokens(self, key_ids: Sequence[bytes]) -> int:
        if not key_ids:
            return 0
        return await self._run(prune.delete_tokens(key_ids, self._driver.dialect))

    # TokenCatalog
    async def list_tokens(
        self,
        *,
        route: str | None = None,
        limit: int = 100,
        before: tuple[int, bytes] | None = None,
    ) -> list[TokenInfo]:
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        return await self._run(catalog.list_tokens(route, limit, before))

    async def find_token(self, token_id_or_hash: bytes) -> TokenInfo | None:
        if len(token_id_or_hash) != 32:
            raise ValueError("a token id or payment hash is 32 bytes")
        return await self._run(catalog.find_token(token_id_or_hash))

    # RateBuckets, Leadership, HealthProbe
    async def take_token(
        self, client: str, now: float, per_minute: int, burst: int
    ) -> float | None:
        if per_minute < 1 or burst < 1:
            raise ValueError("per_minute and burst must be >= 1")
        return await self._run(buckets.take_token(client, now, per_minute, burst))

    async def bucket_wait(
        self, client: str, now: float, per_minute: int, burst: int
    ) -> float | None:
        if per_minute < 1 or burst < 1:
            raise ValueError("per_minute and burst must be >= 1")
        return await self._run(buckets.bucket_wait(client, now, per_minute, burst))

    async def sweep_buckets(self, now: float) -> int:
        return await self._run(buckets.sweep_buckets(now))

    async def forget_challenge_buckets(self) -> int:
        return await self._run(buckets.forget_challenge_buckets())

    # Balances, RequestLimits, Allowances (gateway.metering; schema v3)
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
        _check_units("units", units, low=1)
        _check_ids(balance_id, payment_id)
        return await self._run(balances.credit(balance_id, payment_id, units, unit, scope, now))

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
        _check_units("estimate", estimate, low=1)
        floor = estimate if minimum is None else minimum
        _check_units("minimum", floor, low=1)
        if ttl < 1:
            raise ValueError("ttl must be >= 1 second")
        _check_ids(balance_id)
        op = balances.reserve(
            balance_id,
            new_hold_id(),
            estimate,
            min(floor, estimate),
            unit,
            scope,
            now,
            now + ttl,
            self._driver.dialect,
        )
        return await self._run(op)

    async def settle_units(
        self, balance_id: bytes, hold_id: bytes, actual: int, *, now: int
    ) -> Settlement:
        _check_units("actual", actual, low=0)
        return await self._run(
            balances.settle(balance_id, hold_id, actual, now, self._driver.dialect)
        )

    async def release_units(self, balance_id: bytes, hold_id: bytes) -> bool:
        return await self._run(balances.release(balance_id, hold_id))

    async def get_balance(self, balance_id: bytes, *, now: int) -> Balance | None:
        return await self._run(balances.get_balance(balance_id, now))

    async def sweep_holds(self, now: int) -> int:
        return await self._run(balances.sweep_holds(now - balances.HOLD_GRACE))

    async def take_request_tokens(
        self, keys: Sequence[str], rules: Sequence[RateRule], now: float
    ) -> float | None:
        if len(keys) != len(rules):
            raise ValueError("one rule per key")
        if not keys:
            return None
        if len(set(keys)) != len(keys):
            raise ValueError("bucket keys must be distinct")
        return await self._run(buckets.take_all(keys, rules, now, self._driver.dialect))

    async def take_allowance(
        self, key: str, period: int, limit: int, *, expires_at: int
    ) -> int | None:
        _check_units("limit", limit, low=1)
        return await self._run(allowances.take_allowance(key, period, limit, expires_at))

    async def return_allowance(self, key: str, period: int) -> bool:
        return await self._run(allowances.return_allowance(key, period))

    async def sweep_allowances(self, now: int) -> int:
        return await self._run(allowances.sweep_allowances(now))

    # PaymentSessions
    async def server_secret(self, name: str, candidate: bytes) -> bytes:
        if len(candidate) < 32:
            raise ValueError("a server secret has at least 32 bytes")
        return await self._run(sessions.secret(name, candidate, int(time.time())))

    async def open_session(
        self, action: SessionAction, return_invoice: str, unit_msat: int, answer: StoredAnswer
    ) -> Consumed:
        _check_units("amount_msat", action.amount_msat, low=1)
        return await self._run(sessions.open_session(action, return_invoice, unit_msat, answer))

    async def top_up_session(self, action: SessionAction, answer: StoredAnswer) -> Consumed:
        _check_units("amount_msat", action.amount_msat, low=1)
        return await self._run(sessions.top_up_session(action, answer, self.dialect))

    async def get_session(self, session_id: bytes) -> SessionRow | None:
        return await self._run(sessions.get_session(session_id, int(time.time())))

    async def touch_session(self, session_id: bytes, now: int) -> None:
        await self._run(sessions.touch_session(session_id, now))

    async def close_session(self, session_id: bytes, reason: str, now: int) -> SessionRow | None:
        return await self._run(sessions.close_session(session_id, reason, now, self.dialect))

    async def claim_refund(self, session_id: bytes, now: int, claim_until: int) -> bool:
        return await self._run(sessions.claim_refund(session_id, now, claim_until))

    async def finish_refund(
        self, session_id: bytes, succeeded: bool, fee_msat: int | None, note: str | None
    ) -> bool:
        return await self._run(sessions.finish_refund(session_id, succeeded, fee_msat, note))

    async def replayed_answer(self, challenge_id: str, now: int) -> StoredAnswer | None:
        return await self._run(sessions.replayed_answer(challenge_id, now))

    async def keep_answer(self, challenge_id: str, answer: StoredAnswer, expires_at: int) -> bool:
        return await self._run(sessions.keep_answer(challenge_id, answer, expires_at))

    async def idle_sessions(self, last_activity_before: int, limit: int) -> list[bytes]:
        return await self._run(sessions.idle_sessions(last_activity_before, limit))

    async def unpaid_refunds(self, now: int, limit: int) -> list[bytes]:
        return await self._run(sessions.unpaid_refunds(now, limit))

    async def sweep_answers(self, now: int) -> int:
        return await self._run(sessions.sweep_answers(now))

    async def count_open_sessions(self) -> int:
        return await self._run(sessions.count_open_sessions())

    # SessionCatalog
    async def list_sessions(
        self,
        status: str | None = None,
        limit: int = 100,
        *,
        route: str | None = None,
        refund_state: str | None = None,
        before: tuple[int, bytes] | None = None,
    ) -> list[SessionInfo]:
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        op = session_catalog.list_sessions(
            status, route, refund_state, limit, before, int(time.time())
        )
        return await self._run(op)

    async def find_session(self, session_id: bytes) -> SessionInfo | None:
        return await self._run(session_catalog.find_session(session_id, int(time.time())))

    async def session_credits(self, session_id: bytes) -> list[SessionCredit]:
        return await self._run(session_catalog.session_credits(session_id))

    def leader_lock(self, name: str) -> LeaderLock:
        return self._driver.leader_lock(name)

    async def check_writable(self) -> None:
        await self._run(tokens.check_writable(int(time.time())))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._driver.close()
