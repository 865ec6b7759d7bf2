#!/usr/bin/env python3
"""Micro-benchmark of the access-log line: formatter alone, and the whole logging call.

Measures, per access-log record as `gateway/server/middleware.py` writes it:

- format: `JsonFormatter().format(record)` on a prepared record;
- log call: `logging.getLogger("gateway.access").info("request", extra=...)`
  through the handler `gateway.observability.logsetup.configure` installs, into a file
  (record creation, filters, formatting, write);
- suppressed: the same call for a refusal the access sampler drops (the cost
  of a request under an unpaid flood once its outcome's burst is spent).

`--baseline FILE` also measures another `logs.py` (e.g. an older version:
`git show <commit>:gateway/observability/logsetup.py > /tmp/old_logs.py`) the same way, so the
before/after figures come from one run on one machine.

Usage: .venv/bin/python bench/log_format_bench.py [--n 100000] [--repeat 5] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.observability import logsetup as logs

EXTRA: dict[str, Any] = {
    "request_id": "5f0c4b3e9a1d4c7e8b2a6f1d0e3c9b7a",
    "route": "premium",
    "outcome": "paid",
    "status": 200,
    "method": "GET",
    "path": "/ep212/premium-signal",
    "duration_ms": 0.412,
    "upstream_status": 200,
    "token_id": "9c2f" * 16,
    "error": None,
}


def per_call_us(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Fastest of `repeat` runs, in mean microseconds per call: on a shared host,
    other tenants only ever add time, so the minimum is the least disturbed run."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return min(runs)


def record() -> logging.LogRecord:
    rec = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "request", None, None)
    rec.__dict__.update(EXTRA)
    return rec


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_logs", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(module: ModuleType, log_path: Path, n: int, repeat: int) -> dict[str, float]:
    formatter = module.JsonFormatter()
    rec = record()
    results = {"format": per_call_us(lambda: formatter.format(rec), n, repeat)}

    if module is logs:
        logs.configure("info", log_file=log_path, tick_seconds=None)
    else:  # an older configure() wrote to stderr: same formatter, same file
        module.configure("info")
        handler = logging.FileHandler(log_path)
        handler.setFormatter(module.JsonFormatter())
        logging.getLogger().handlers[:] = [handler]
    access = logging.getLogger("gateway.access")
    results["log call"] = per_call_us(lambda: access.info("request", extra=EXTRA), n, repeat)
    refused = {**EXTRA, "outcome": "rate_limited", "status": 429, "token_id": None}
    results["suppressed"] = per_call_us(lambda: access.info("request", extra=refused), n, repeat)
    if module is logs:
        logs.unconfigure()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another logs.py to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternate targets this often")
    args = parser.parse_args(argv)
    targets = [("current", logs)]
    if args.baseline:
        targets.insert(0, ("baseline", load(args.baseline)))
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="log-bench-") as tmp:
        for _ in range(args.rounds):  # interleaved, so a noisy minute hits both
            for name, module in targets:
                results = measure(module, Path(tmp) / f"{name}.log", args.n, args.repeat)
                mine = best.setdefault(name, results)
                for key, value in results.items():
                    mine[key] = min(mine[key], value)
    for name, results in best.items():
        figures = ", ".join(f"{k} {v:.2f} us" for k, v in results.items())
        print(f"{name:<9} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
