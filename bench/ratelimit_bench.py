#!/usr/bin/env python3
"""Cost per challenge of the challenge rate limiters, on loopback.

Measures `allow()` of:
1. local:            LocalChallengeLimiter (per-process memory), the baseline;
2. shared-postgres:  SharedChallengeLimiter on a real PostgreSQL (one UPSERT per call),
                     sequential latency and throughput with concurrent callers;
3. sqlite-bucket:    the same UPSERT on a SQLite store (each call a write and an fsync);
4. flood:            one client far over its limit (every call refused), through the
                     shared limiter on SQLite and PostgreSQL (a read per call: the
                     bucket is read first and written only to take a token), beside
                     the UPSERT every call used to cost.

PostgreSQL: `--postgres-url` (a database the bench may write to), or else a
private throw-away server from Debian's binaries (tests/support/postgres.py).
Every loop is bounded in count. Figures depend on the machine; see bench/README.md.

Usage: .venv/bin/python bench/ratelimit_bench.py [--calls 2000] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from gateway.paywall.ratelimit import LocalChallengeLimiter, SharedChallengeLimiter  # noqa: E402
from gateway.store import Store, open_store  # noqa: E402

T0 = 1_700_000_000.0
PER_MINUTE, BURST = 60, 20


def summary(name: str, samples: list[float], wall: float) -> dict[str, float | str | int]:
    ordered = sorted(samples)
    return {
        "limiter": name,
        "calls": len(samples),
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "calls_per_s": len(samples) / wall,
    }


async def sequential(
    name: str, allow: Callable[[str, float], Awaitable[float | None]], calls: int
) -> dict[str, float | str | int]:
    """One caller; a new client every 4 calls (most calls insert or update a row)."""
    samples = []
    start = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        await allow(f"198.51.{i // 1024 % 256}.{i // 4 % 256}", T0 + i * 0.001)
        samples.append(time.perf_counter() - t)
    return summary(name, samples, time.perf_counter() - start)


async def flood(
    name: str, allow: Callable[[str, float], Awaitable[float | None]], calls: int
) -> dict[str, float | str | int]:
    """One client, its burst spent first: every measured call is refused."""
    for _ in range(BURST):
        await allow("192.0.2.99", T0)
    samples = []
    start = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        wait = await allow("192.0.2.99", T0 + i * 1e-6)
        samples.append(time.perf_counter() - t)
        if wait is None:
            raise SystemExit(f"{name}: a flooding client was granted a token")
    return summary(name, samples, time.perf_counter() - start)


async def concurrent(
    name: str,
    allow: Callable[[str, float], Awaitable[float | None]],
    calls: int,
    concurrency: int,
) -> dict[str, float | str | int]:
    samples: list[float] = []
    per_worker = calls // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            t = time.perf_counter()
            await allow(f"203.0.{w}.{i % 64}", T0 + i * 0.001)
            samples.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return summary(f"{name} x{concurrency}", samples, time.perf_counter() - start)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer() as server:
        yield server.url(server.create_database())


async def run(args: argparse.Namespace, pg_url: str) -> list[dict[str, float | str | int]]:
    results = []
    local = LocalChallengeLimiter(PER_MINUTE, BURST)
    results.append(await sequential("local", local.allow, args.calls))

    store: Store = await open_store(pg_url)
    try:
        shared = SharedChallengeLimiter(store, PER_MINUTE, BURST, timeout=5.0)
        await sequential("warm-up", shared.allow, 100)
        results.append(await sequential("shared-postgres", shared.allow, args.calls))
        results.append(
            await concurrent("shared-postgres", shared.allow, args.calls, args.concurrency)
        )
        results.append(await flood("flood shared-postgres", shared.allow, args.calls))

        async def pg_upsert(key: str, now: float) -> float | None:
            return await store.take_token(key, now, PER_MINUTE, BURST)

        results.append(await flood("flood postgres-upsert", pg_upsert, args.calls))
        if shared.degraded:
            raise SystemExit("the shared limiter fell back to local buckets: figures invalid")
    finally:
        await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await open_store(f"sqlite://{tmp}/bench.db")
        try:

            async def bucket(key: str, now: float) -> float | None:
                return await sqlite.take_token(key, now, PER_MINUTE, BURST)

            results.append(await sequential("sqlite-bucket", bucket, args.calls // 4))
            on_sqlite = SharedChallengeLimiter(sqlite, PER_MINUTE, BURST, timeout=5.0)
            results.append(await flood("flood shared-sqlite", on_sqlite.allow, args.calls))
            results.append(await flood("flood sqlite-upsert", bucket, args.calls // 4))
            if on_sqlite.degraded:
                raise SystemExit("the SQLite shared limiter fell back: figures invalid")
        finally:
            await sqlite.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.calls < 100 or args.concurrency < 1:
        parser.error("--calls >= 100 and --concurrency >= 1")
    with postgres(args.postgres_url) as url:
        results = asyncio.run(run(args, url))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'limiter':<24} {'calls':>6} {'mean_us':>9} {'p50_us':>9} {'p99_us':>9} {'calls/s':>9}")
    for r in results:
        print(
            f"{r['limiter']:<24} {r['calls']:>6} {r['mean_us']:>9.1f} {r['p50_us']:>9.1f}"
            f" {r['p99_us']:>9.1f} {r['calls_per_s']:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
