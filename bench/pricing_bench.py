#!/usr/bin/env python3
"""What a pricing hook adds to each challenge on a hooked route, on loopback.

Measures `PriceHook.price()` (gateway/pricer/hook.py: JSON POST, bounded read,
validation, metrics) against a real aiohttp pricing service answering
`{"price_msats": N}`, run in its own process so it does not share the
measuring event loop:

1. sequential:  one caller, `--calls` prices, latency per call;
2. concurrent:  `--concurrency` callers sharing the hook's pool (32 connections),
                throughput and latency;
3. fallback:    the same calls against a closed port (connection refused), the
                cost of a hook that is down.

Every loop is bounded in count. Figures depend on the machine; see bench/README.md.

Usage: .venv/bin/python bench/pricing_bench.py [--calls 2000] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from aiohttp import web  # noqa: E402

from gateway.config.model import PricingHook  # noqa: E402
from gateway.observability.metrics import GatewayMetrics  # noqa: E402
from gateway.pricer.hook import PriceHook  # noqa: E402
from gateway.pricer.prices import PriceQuery  # noqa: E402

PRICE_MSAT = 21_000
QUERY = PriceQuery("bench", "GET", "/v1/report", (("x-model", "large"),))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int, ready: Any) -> None:
    async def price(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"price_msats": PRICE_MSAT})

    app = web.Application()
    app.router.add_post("/price", price)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def summary(name: str, samples: list[float], wall: float) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "phase": name,
        "calls": len(samples),
        "mean_ms": statistics.fmean(samples) * 1e3,
        "p50_ms": ordered[len(ordered) // 2] * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "calls_per_s": len(samples) / wall,
    }


async def _run(hook: PriceHook, config: PricingHook, calls: int, concurrency: int) -> Any:
    samples: list[float] = []
    remaining = iter(range(calls))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await hook.price(config, QUERY)
            samples.append(time.perf_counter() - started)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


async def measure(port: int, calls: int, concurrency: int) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/price"
    up = PricingHook(url, fallback_msat=1_000, max_msat=1_000_000, timeout_seconds=5.0)
    down = PricingHook(
        f"http://127.0.0.1:{_free_port()}/price", 1_000, 1_000_000, timeout_seconds=5.0
    )
    metrics = GatewayMetrics()
    hook = PriceHook.create(metrics)
    try:
        price = await hook.price(up, QUERY)
        if price.msat != PRICE_MSAT:
            raise SystemExit(f"the pricing service answered {price}, not {PRICE_MSAT}")
        await _run(hook, up, min(200, calls), 1)  # warm-up: connections, code paths
        results = []
        samples, wall = await _run(hook, up, calls, 1)
        results.append(summary("sequential", samples, wall))
        samples, wall = await _run(hook, up, calls, concurrency)
        results.append(summary(f"concurrent_{concurrency}", samples, wall))
        samples, wall = await _run(hook, down, calls, 1)
        results.append(summary("fallback_refused", samples, wall))
        labels = {"route": "bench", "reason": "error"}
        fallbacks = metrics.registry.get_sample_value("l402_pricing_fallbacks_total", labels)
        if fallbacks != calls:
            raise SystemExit(f"expected {calls} fallbacks, counted {fallbacks}")
        return results
    finally:
        await hook.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("gateway.pricing").setLevel(logging.ERROR)  # one warning per fallback
    port = _free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            raise SystemExit("the pricing service did not start")
        results = asyncio.run(_wait_then_measure(port, args.calls, args.concurrency))
    finally:
        server.terminate()
        server.join(10)
    if args.json:
        print(json.dumps(results, indent=2))
    for row in results:
        print(
            f"{row['phase']:<18} {row['calls']:>6} calls  p50 {row['p50_ms']:.3f} ms  "
            f"p99 {row['p99_ms']:.3f} ms  {row['calls_per_s']:.0f}/s",
            file=sys.stderr,
        )
    return 0


async def _wait_then_measure(port: int, calls: int, concurrency: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:  # the child has set `ready`; its socket binds a moment later
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the pricing service is not listening") from None
            await asyncio.sleep(0.05)
    return await measure(port, calls, concurrency)


if __name__ == "__main__":
    sys.exit(main())
