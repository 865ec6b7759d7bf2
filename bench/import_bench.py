"""How fast `import-aperture` moves Aperture's root keys into our store.

Builds an Aperture v0.5.0-shaped SQLite database with N tokens (default
200,000: a `secrets` row and an `l402_transactions` row each, as Aperture's
MintL402 writes them; tests/aperture/schema.py), then imports it into a fresh
store of ours the way the command does (open the source read-only, page,
check, write each page in one store transaction) and prints keys/s. Beside it,
the per-row rate: a sample imported one key per store call (one transaction
and one commit per key, which is what the importer did before batching).

    .venv/bin/python bench/import_bench.py                  # 200,000 keys into SQLite
    .venv/bin/python bench/import_bench.py --keys 20000 --baseline-sample 1000
    .venv/bin/python bench/import_bench.py --store-url postgresql://user@127.0.0.1:5432/db
    .venv/bin/python bench/import_bench.py --require 5000   # exit 1 below 5,000 keys/s

It is a measurement: it checks only that every key arrived (counts, and a
sample of keys read back), and exits 1 when one did not. Everything it writes
lives in a temporary directory removed at the end (a PostgreSQL store given
with --store-url is written to and left as it is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.aperture.importer import run_import  # noqa: E402
from gateway.aperture.keystore import open_source  # noqa: E402
from gateway.aperture.options import ImportOptions  # noqa: E402
from gateway.store import open_store  # noqa: E402
from gateway.store.types import ImportedKey  # noqa: E402
from tests.aperture.schema import T0, ApertureDb, Token  # noqa: E402

STORE_TIMEOUT = 30.0  # as import-aperture opens the store


@dataclass
class Result:
    keys: int
    build_seconds: float
    import_seconds: float
    keys_per_second: float
    baseline_sample: int
    baseline_keys_per_second: float | None
    store: str


def build(path: Path, count: int) -> list[Token]:
    db = ApertureDb.sqlite(path)
    tokens = [Token(service=random.choice(("premium", "expensive"))) for _ in range(count)]
    for start in range(0, count, 50_000):
        db.mint(tokens[start : start + 50_000])
    return tokens


async def batched(source_url: str, store_url: str) -> tuple[float, int]:
    """The command's path; (seconds, keys imported)."""
    lines: list[str] = []
    started = time.perf_counter()
    source = await open_source(source_url)
    store = await open_store(store_url, timeout=STORE_TIMEOUT)
    try:
        report = await run_import(
            source, store, ImportOptions({"premium", "expensive"}), lines.append
        )
    finally:
        await store.close()
        await source.close()
    seconds = time.perf_counter() - started
    if lines or not report.clean:
        raise SystemExit(f"import not clean: {report}\n" + "\n".join(lines[:20]))
    return seconds, report.imported


async def per_row(tokens: list[Token], store_url: str) -> float:
    """One store call (one transaction, one commit) per key; keys/s."""
    store = await open_store(store_url, timeout=STORE_TIMEOUT)
    try:
        started = time.perf_counter()
        for t in tokens:
            key = ImportedKey(t.key_id, t.root_key, T0, "aperture-baseline", t.token_id)
            if not await store.import_root_key(key):
                raise SystemExit("baseline: a key was not imported")
        return len(tokens) / (time.perf_counter() - started)
    finally:
        await store.close()


async def check(tokens: list[Token], store_url: str, sample: int = 1000) -> None:
    store = await open_store(store_url, timeout=STORE_TIMEOUT)
    try:
        for t in random.sample(tokens, min(sample, len(tokens))):
            if await store.get_root_key(t.key_id) != t.root_key:
                raise SystemExit("a key read back differs from Aperture's")
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--baseline-sample", type=int, default=2_000, help="0: skip")
    parser.add_argument("--store-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--require", type=float, default=0.0, help="exit 1 below this keys/s")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="l402-import-bench-"))
    try:
        started = time.perf_counter()
        tokens = build(work / "aperture.db", args.keys)
        build_seconds = time.perf_counter() - started
        print(f"built {args.keys} Aperture tokens in {build_seconds:.1f} s", file=sys.stderr)
        baseline = None
        if args.baseline_sample:
            sample = [Token() for _ in range(args.baseline_sample)]
            baseline_url = args.store_url or f"sqlite:///{work / 'baseline.db'}"
            baseline = asyncio.run(per_row(sample, baseline_url))
        store_url = args.store_url or f"sqlite:///{work / 'tokens.db'}"
        seconds, imported = asyncio.run(batched(f"sqlite:{work / 'aperture.db'}", store_url))
        if imported != args.keys:
            print(f"imported {imported} of {args.keys} keys", file=sys.stderr)
            return 1
        asyncio.run(check(tokens, store_url))
        result = Result(
            keys=args.keys,
            build_seconds=round(build_seconds, 2),
            import_seconds=round(seconds, 2),
            keys_per_second=round(imported / seconds),
            baseline_sample=args.baseline_sample,
            baseline_keys_per_second=None if baseline is None else round(baseline),
            store="sqlite" if args.store_url is None else "given",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    line = (
        f"import-aperture: {result.keys} keys in {result.import_seconds} s = "
        f"{result.keys_per_second} keys/s (batched, {result.store} store)"
    )
    if baseline is not None:
        line += (
            f"; per-row (one transaction per key, {result.baseline_sample} keys): "
            f"{result.baseline_keys_per_second} keys/s"
        )
    print(json.dumps(asdict(result)) if args.json else line)
    if args.json:
        print(line, file=sys.stderr)
    return 1 if result.keys_per_second < args.require else 0


if __name__ == "__main__":
    sys.exit(main())
