"""The store's schema, written once for both databases, and its migrations.

A new database gets version 1's tables and then every migration in order, so
the path an upgraded deployment takes is the path every fresh store takes.
Column types are dialect tokens (`gateway.store.dialect`).

Version 1: tokens (single-use leases: `lease_until` and `lease_id` set together
by `reserve`, cleared together by `commit`/`release`), settlements, the resume
settle index, paid-request counts, the health row.
Version 2: root keys imported from Aperture (`l402_imported_keys`), the shared
challenge rate-limit buckets (`l402_rate_buckets`), and a (created_at,
token_id) index for listing tokens newest first.
Version 3: metered balances (`l402_balances`), the payments credited to them
(`l402_balance_credits`, one row per payment: crediting is idempotent), the
reservations held against them (`l402_balance_holds`, each with a deadline),
and counted allowances such as freebies (`l402_allowances`).

Version 4: the Payment scheme (MPP). Its invoices are rows of `l402_tokens`
marked by `scheme` (`charge`, `session`), so revenue booking, pruning,
revocation and single use work for them as for L402 tokens; server secrets
(`l402_secrets`: the challenge-id HMAC key, shared by every worker and
replica); sessions (`l402_sessions`: the balance lives in `l402_balances`
under the session id, in msat); and the answers of consumed challenges
(`l402_payment_results`), replayed to a retried credential.
"""

from __future__ import annotations

from gateway.store.dialect import Dialect
from gateway.store.steps import Execute, FetchOne, Steps, reads, transaction
from gateway.store.types import StoreError

SCHEMA_VERSION = 4

V1 = [
    """CREATE TABLE l402_tokens (
        key_id <blob> PRIMARY KEY,
        token_id <blob> NOT NULL,
        payment_hash <blob> NOT NULL,
        route TEXT NOT NULL,
        root_key <blob>,
        price_msat <bigint> NOT NULL,
        single_use <bool> NOT NULL,
        created_at <bigint> NOT NULL,
        valid_until <bigint>,
        revoked_at <bigint>,
        lease_until <bigint>,
        lease_id <blob>,
        used_at <bigint>
    )""",
    "CREATE INDEX l402_tokens_token_id ON l402_tokens (token_id)",
    "CREATE INDEX l402_tokens_payment_hash ON l402_tokens (payment_hash)",
    "CREATE INDEX l402_tokens_created_at ON l402_tokens (created_at)",
    """CREATE TABLE l402_settlements (
        payment_hash <blob> PRIMARY KEY,
        route TEXT NOT NULL,
        amt_paid_msat <bigint> NOT NULL,
        settle_index <bigint> NOT NULL,
        settled_at <bigint> NOT NULL,
        day TEXT NOT NULL
    )""",
    "CREATE INDEX l402_settlements_day ON l402_settlements (day)",
    """CREATE TABLE l402_settle_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_settle_index <bigint> NOT NULL
    )""",
    """CREATE TABLE l402_paid_requests (
        day TEXT NOT NULL,
        route TEXT NOT NULL,
        count <bigint> NOT NULL,
        PRIMARY KEY (day, route)
    )""",
    "CREATE TABLE l402_store_health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at <bigint>)",
]

MIGRATIONS: dict[int, list[str]] = {
    2: [
        # root_key is NULL once revoked; token_id, payment_hash, service and
        # price_msat are known only when Aperture recorded its transactions.
        """CREATE TABLE l402_imported_keys (
            key_id <blob> PRIMARY KEY,
            root_key <blob>,
            token_id <blob>,
            payment_hash <blob>,
            service TEXT,
            price_msat <bigint>,
            source TEXT NOT NULL,
            created_at <bigint> NOT NULL,
            imported_at <bigint> NOT NULL,
            revoked_at <bigint>
        )""",
        "CREATE INDEX l402_imported_keys_token_id ON l402_imported_keys (token_id)",
        "CREATE INDEX l402_imported_keys_payment_hash ON l402_imported_keys (payment_hash)",
        "CREATE INDEX l402_imported_keys_created ON l402_imported_keys (created_at, token_id)",
        "CREATE INDEX l402_tokens_created_token ON l402_tokens (created_at, token_id)",
        # The (created_at, token_id) index serves every created_at range v1's index did:
        # one b-tree fewer to update per challenge.
        "DROP INDEX l402_tokens_created_at",
        # One row per client seen in the last burst/rate seconds; `full_at` is when the
        # bucket is full again at the latest, after which the row is deleted. Unlogged on
        # PostgreSQL (no WAL write per challenge): losing it in a crash or a failover
        # only gives every client a full bucket again.
        """CREATE <unlogged> TABLE l402_rate_buckets (
            client TEXT PRIMARY KEY,
            tokens <float> NOT NULL,
            updated_at <float> NOT NULL,
            full_at <float> NOT NULL,
            granted INTEGER NOT NULL,
            rate <float> NOT NULL,
            burst <float> NOT NULL
        )""",
        "CREATE INDEX l402_rate_buckets_full_at ON l402_rate_buckets (full_at)",
    ],
    3: [
        # A prepaid balance in integer units (tokens, requests, bytes, msat, ...).
        # `units` is what is left; `credited` and `debited` are running totals
        # (credited - debited == units, always). `scope` names what may spend it
        # (e.g. the route), so one credential's balance cannot pay for another's.
        """CREATE TABLE l402_balances (
            balance_id <blob> PRIMARY KEY,
            unit TEXT NOT NULL,
            scope TEXT NOT NULL,
            units <bigint> NOT NULL CHECK (units >= 0),
            credited <bigint> NOT NULL,
            debited <bigint> NOT NULL,
            created_at <bigint> NOT NULL,
            updated_at <bigint> NOT NULL
        )""",
        # One row per payment credited: the primary key makes a second credit of
        # the same payment a no-op.
        """CREATE TABLE l402_balance_credits (
            payment_id <blob> PRIMARY KEY,
            balance_id <blob> NOT NULL,
            units <bigint> NOT NULL,
            created_at <bigint> NOT NULL
        )""",
        "CREATE INDEX l402_balance_credits_balance ON l402_balance_credits (balance_id)",
        # A request's reservation: counted against the balance until settled,
        # released or past `expires_at` (a crashed worker's hold lapses).
        """CREATE TABLE l402_balance_holds (
            hold_id <blob> PRIMARY KEY,
            balance_id <blob> NOT NULL,
            amount <bigint> NOT NULL CHECK (amount > 0),
            created_at <bigint> NOT NULL,
            expires_at <bigint> NOT NULL
        )""",
        "CREATE INDEX l402_balance_holds_balance ON l402_balance_holds (balance_id, expires_at)",
        "CREATE INDEX l402_balance_holds_expires ON l402_balance_holds (expires_at)",
        # Counted allowances per key and period (freebies: N per client per day).
        """CREATE TABLE l402_allowances (
            allowance_key TEXT NOT NULL,
            period <bigint> NOT NULL,
            used <bigint> NOT NULL,
            expires_at <bigint> NOT NULL,
            PRIMARY KEY (allowance_key, period)
        )""",
        "CREATE INDEX l402_allowances_expires ON l402_allowances (expires_at)",
    ],
    4: [
        "ALTER TABLE l402_tokens ADD COLUMN scheme TEXT NOT NULL DEFAULT 'l402'",
        """CREATE TABLE l402_secrets (
            name TEXT PRIMARY KEY,
            value <blob> NOT NULL,
            created_at <bigint> NOT NULL
        )""",
        # session_id = the deposit invoice's payment hash. A closed session is kept:
        # its preimage must never open anything again. refund_state: skipped, pending
        # (owed, not attempted), paying (one attempt claimed until refund_claim_until),
        # succeeded, failed.
        """CREATE TABLE l402_sessions (
            session_id <blob> PRIMARY KEY,
            route TEXT NOT NULL,
            unit_msat <bigint> NOT NULL,
            return_invoice TEXT NOT NULL,
            status TEXT NOT NULL,
            opened_at <bigint> NOT NULL,
            last_activity <bigint> NOT NULL,
            closed_at <bigint>,
            close_reason TEXT,
            refund_msat <bigint>,
            refund_state TEXT,
            refund_claim_until <bigint>,
            refund_fee_msat <bigint>,
            refund_note TEXT
        )""",
        "CREATE INDEX l402_sessions_idle ON l402_sessions (status, last_activity)",
        "CREATE INDEX l402_sessions_refunds ON l402_sessions (refund_state)",
        """CREATE TABLE l402_payment_results (
            challenge_id TEXT PRIMARY KEY,
            status INTEGER NOT NULL,
            body TEXT NOT NULL,
            expires_at <bigint> NOT NULL
        )""",
        "CREATE INDEX l402_payment_results_expires ON l402_payment_results (expires_at)",
    ],
}

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS l402_schema_version (version INTEGER NOT NULL)"


def _newer(version: int) -> StoreError:
    return StoreError(f"store schema v{version} is newer than this gateway's (v{SCHEMA_VERSION})")


@reads
def schema_version(dialect: Dialect) -> Steps[int | None]:
    """The stored schema version (None for an empty database), without taking a write lock.

    Lets a gateway start while another process holds a long write transaction.
    """
    if (yield FetchOne(dialect.table_exists, ("l402_schema_version",))) is None:
        return None
    row = yield FetchOne("SELECT max(version) FROM l402_schema_version")
    return None if row is None or row[0] is None else int(row[0])


@transaction
def migrate(dialect: Dialect) -> Steps[int]:
    """Create or upgrade the schema to SCHEMA_VERSION; the version found before."""
    if dialect.migration_lock is not None:
        yield FetchOne(dialect.migration_lock)
    yield Execute(_VERSION_TABLE)
    row = yield FetchOne("SELECT max(version) FROM l402_schema_version")
    found = 0 if row is None or row[0] is None else int(row[0])
    if found > SCHEMA_VERSION:
        raise _newer(found)
    if found == 0:
        for statement in V1:
            yield Execute(dialect.ddl(statement))
        yield Execute("INSERT INTO l402_schema_version (version) VALUES (?)", (1,))
    for version in range(max(found, 1) + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version]:
            yield Execute(dialect.ddl(statement))
        yield Execute("INSERT INTO l402_schema_version (version) VALUES (?)", (version,))
    return found


def check_version(found: int | None) -> bool:
    """True when `found` is current; raises StoreError when it is newer than this code."""
    if found is not None and found > SCHEMA_VERSION:
        raise _newer(found)
    return found == SCHEMA_VERSION
