"""Shared challenge rate-limit buckets: one atomic UPSERT per challenge.

The refill is computed in SQL from the stored row, so every gateway sharing
the database draws from one allowance per client, and concurrent requests
serialise on the row (PostgreSQL's ON CONFLICT DO UPDATE locks it; a SQLite
write holds the database lock). Rate and burst ride along in each statement,
so a reload's new limit applies from the next request, remaining tokens
capped at the new burst. A clock that steps back refills nothing.

Rows are bounded: `full_at` is the latest time the bucket is full again, after
which a missing row means the same thing (a new client starts full), so
`sweep_buckets` deletes those rows in bounded batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.metering.limits import BucketState, RateRule, full_at
from gateway.metering.limits import take_all as limit_take_all
from gateway.store.dialect import Dialect
from gateway.store.steps import (
    Execute,
    FetchAll,
    FetchOne,
    Steps,
    placeholders,
    reads,
    transaction,
    writes,
)

# Float slack: refills from differences of large epoch timestamps may land a hair
# under a whole token; a millionth of a token is forgiven (as the local limiter does).
EPSILON = 1e-6
SWEEP_BATCH = 1000

_ELAPSED = (
    "(CASE WHEN excluded.updated_at > b.updated_at"
    " THEN excluded.updated_at - b.updated_at ELSE 0 END)"
)
_RAW = f"(b.tokens + {_ELAPSED} * excluded.rate)"
_REFILLED = f"(CASE WHEN {_RAW} > excluded.burst THEN excluded.burst ELSE {_RAW} END)"
_CAN_TAKE = f"{_REFILLED} >= {1.0 - EPSILON!r}"

# Built from the constant fragments above only; every value is a bound parameter.
TAKE = (
    "INSERT INTO l402_rate_buckets AS b"  # noqa: S608
    " (client, tokens, updated_at, full_at, granted, rate, burst)"
    " VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (client) DO UPDATE SET"
    f" tokens = CASE WHEN {_CAN_TAKE}"
    f" THEN (CASE WHEN {_REFILLED} > 1.0 THEN {_REFILLED} - 1.0 ELSE 0.0 END)"
    f" ELSE {_REFILLED} END,"
    f" granted = CASE WHEN {_CAN_TAKE} THEN 1 ELSE 0 END,"
    " updated_at = CASE WHEN excluded.updated_at > b.updated_at"
    " THEN excluded.updated_at ELSE b.updated_at END,"
    " full_at = excluded.full_at, rate = excluded.rate, burst = excluded.burst"
    " RETURNING tokens, granted"
)


@writes
def take_token(client: str, now: float, per_minute: int, burst: int) -> Steps[float | None]:
    """Take one token from `client`'s bucket: None when taken, else seconds until the next.

    A new client starts with a full bucket (`burst`), so its first request takes
    one and leaves `burst - 1`. `full_at` = now + burst/rate bounds the row's life
    from above whatever is left in it.
    """
    rate = per_minute / 60.0
    row = yield FetchOne(
        TAKE,
        (client, float(burst) - 1.0, float(now), now + burst / rate, rate, float(burst)),
    )
    tokens, granted = float(row[0]), int(row[1])
    return None if granted else (1.0 - tokens) / rate


@reads
def bucket_wait(client: str, now: float, per_minute: int, burst: int) -> Steps[float | None]:
    """Without writing: seconds until `client`'s bucket has a token, or None when it has
    one now (or no row: a new client starts full).

    The refusal path of the shared challenge limiter. A client over its limit is
    told so by this read alone (on SQLite a WAL reader: no write lock, no fsync),
    so an unpaid flood costs reads; only a request that will take a token runs
    `take_token`, whose UPSERT decides again atomically (a race between the two
    can only refuse there, never grant twice).
    """
    row = yield FetchOne(
        "SELECT tokens, updated_at FROM l402_rate_buckets WHERE client = ?", (client,)
    )
    if row is None:
        return None
    rate = per_minute / 60.0
    elapsed = max(0.0, float(now) - float(row[1]))
    tokens = min(float(burst), float(row[0]) + elapsed * rate)
    if tokens >= 1.0 - EPSILON:
        return None
    return (1.0 - tokens) / rate


@writes
def forget_challenge_buckets() -> Steps[int]:
    """Delete every challenge bucket (not the `rl:` request-limit ones): a limit turned
    off forgets every client, as the per-process buckets do."""
    deleted = yield Execute("DELETE FROM l402_rate_buckets WHERE client NOT LIKE 'rl:%'", ())
    return int(deleted)


@writes
def sweep_buckets(now: float) -> Steps[int]:
    """Delete up to SWEEP_BATCH rows of buckets that are full again (the same as absent)."""
    deleted = yield Execute(
        "DELETE FROM l402_rate_buckets WHERE client IN"
        " (SELECT client FROM l402_rate_buckets WHERE full_at <= ? LIMIT ?)",
        (float(now), SWEEP_BATCH),
    )
    return int(deleted)


# --- per-credential request limits (gateway.metering.limits) ------------------------------
# The same table, keys prefixed `rl:` (a challenge key is an IP address or a socket
# peer's name). Several rules may apply to one request and the request passes only if
# every bucket has a token, so the buckets are read locked, decided by the pure
# arithmetic of gateway.metering.limits, and written back only when all allow.


@transaction
def take_all(
    keys: Sequence[str], rules: Sequence[RateRule], now: float, dialect: Dialect
) -> Steps[float | None]:
    """One token from every bucket, or none: None when taken, else the longest wait.

    Keys are locked in sorted order (and created full first, so there is a row
    to lock), so two requests sharing buckets cannot deadlock.
    """
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    for i in order:
        rule = rules[i]
        yield Execute(
            "INSERT INTO l402_rate_buckets (client, tokens, updated_at, full_at, granted,"
            " rate, burst) VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (client) DO NOTHING",
            (keys[i], float(rule.burst), float(now), float(now), rule.rate, float(rule.burst)),
        )
    rows = yield FetchAll(
        "SELECT client, tokens, updated_at FROM l402_rate_buckets"  # noqa: S608
        f" WHERE client IN {placeholders(len(keys))} ORDER BY client{dialect.row_lock}",
        tuple(keys),
    )
    found = {str(r[0]): BucketState(float(r[1]), float(r[2])) for r in rows}
    decision = limit_take_all([found.get(k) for k in keys], rules, now)
    if decision.wait is not None:
        return decision.wait
    for i in order:
        state, rule = decision.states[i], rules[i]
        yield Execute(
            "UPDATE l402_rate_buckets SET tokens = ?, updated_at = ?, full_at = ?, granted = 1,"
            " rate = ?, burst = ? WHERE client = ?",
            (state.tokens, state.updated, full_at(state, rule), rule.rate, float(rule.burst),
             keys[i]),
        )  # fmt: skip
    return None
