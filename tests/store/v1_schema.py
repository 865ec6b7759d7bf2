"""Schema version 1 exactly as deployed (gateway/store/schema.py before version 2), frozen.

A copy, not an import: migration tests must create the OLD database, whatever
the current code's idea of version 1 becomes.
"""

from __future__ import annotations

SQLITE_SCHEMA = """
CREATE TABLE l402_tokens (
    key_id BLOB PRIMARY KEY,
    token_id BLOB NOT NULL,
    payment_hash BLOB NOT NULL,
    route TEXT NOT NULL,
    root_key BLOB,                 -- NULL once revoked
    price_msat INTEGER NOT NULL,
    single_use INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    valid_until INTEGER,
    revoked_at INTEGER,
    lease_until INTEGER,           -- single-use: reservation held until then
    lease_id BLOB,                 -- single-use: the current holder's random lease id
    used_at INTEGER                -- single-use: consumed
);
CREATE INDEX l402_tokens_token_id ON l402_tokens (token_id);
CREATE INDEX l402_tokens_payment_hash ON l402_tokens (payment_hash);
CREATE INDEX l402_tokens_created_at ON l402_tokens (created_at);
CREATE TABLE l402_settlements (
    payment_hash BLOB PRIMARY KEY,
    route TEXT NOT NULL,
    amt_paid_msat INTEGER NOT NULL,
    settle_index INTEGER NOT NULL,
    settled_at INTEGER NOT NULL,
    day TEXT NOT NULL
);
CREATE INDEX l402_settlements_day ON l402_settlements (day);
CREATE TABLE l402_settle_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_settle_index INTEGER NOT NULL
);
CREATE TABLE l402_paid_requests (
    day TEXT NOT NULL,
    route TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (day, route)
);
CREATE TABLE l402_store_health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at INTEGER);
"""

POSTGRES_SCHEMA = [
    """CREATE TABLE l402_tokens (
        key_id BYTEA PRIMARY KEY,
        token_id BYTEA NOT NULL,
        payment_hash BYTEA NOT NULL,
        route TEXT NOT NULL,
        root_key BYTEA,
        price_msat BIGINT NOT NULL,
        single_use BOOLEAN NOT NULL,
        created_at BIGINT NOT NULL,
        valid_until BIGINT,
        revoked_at BIGINT,
        lease_until BIGINT,
        lease_id BYTEA,
        used_at BIGINT
    )""",
    "CREATE INDEX l402_tokens_token_id ON l402_tokens (token_id)",
    "CREATE INDEX l402_tokens_payment_hash ON l402_tokens (payment_hash)",
    "CREATE INDEX l402_tokens_created_at ON l402_tokens (created_at)",
    """CREATE TABLE l402_settlements (
        payment_hash BYTEA PRIMARY KEY,
        route TEXT NOT NULL,
        amt_paid_msat BIGINT NOT NULL,
        settle_index BIGINT NOT NULL,
        settled_at BIGINT NOT NULL,
        day TEXT NOT NULL
    )""",
    "CREATE INDEX l402_settlements_day ON l402_settlements (day)",
    """CREATE TABLE l402_settle_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_settle_index BIGINT NOT NULL
    )""",
    """CREATE TABLE l402_paid_requests (
        day TEXT NOT NULL,
        route TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (day, route)
    )""",
    "CREATE TABLE l402_store_health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at BIGINT)",
]

V1_VERSION_TABLE = "CREATE TABLE l402_schema_version (version INTEGER NOT NULL)"
