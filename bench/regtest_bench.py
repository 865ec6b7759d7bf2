"""Regtest figures for the foundation: network bring-up time and regtest payment latency.

Brings up the real network (btcd + seller/buyer LND, cached binaries) `--runs`
times, and on the last one pays `--payments` seller invoices from the buyer with
SendPaymentV2, printing bring-up phases and payment latency percentiles.

Usage: .venv/bin/python bench/regtest_bench.py [--runs 1] [--payments 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor, RegtestNetwork


async def pay_many(desc: Descriptor, count: int) -> list[float]:
    seller = LndClient.connect(
        desc.seller.rpc,
        tls_cert=Path(desc.seller.tls_cert),
        macaroon=Path(desc.seller.invoice_macaroon),
    )
    buyer = LndClient.connect(
        desc.buyer.rpc,
        tls_cert=Path(desc.buyer.tls_cert),
        macaroon=Path(desc.buyer.admin_macaroon),
    )
    seconds = []
    try:
        for i in range(count):
            invoice = await seller.add_invoice(10_000, memo=f"bench {i}", expiry=600)
            start = time.perf_counter()
            payment = await buyer.pay_invoice(
                invoice.payment_request, fee_limit_msat=10_000, timeout_seconds=30
            )
            seconds.append(time.perf_counter() - start)
            if hashlib.sha256(payment.preimage).digest() != invoice.payment_hash:
                raise SystemExit("payment returned a preimage that does not match the hash")
    finally:
        await seller.close()
        await buyer.close()
    return seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"bring_up": []}
    for run in range(args.runs):
        network = RegtestNetwork()
        desc = network.start()
        try:
            result["bring_up"].append({k: round(v, 2) for k, v in network.timings.items()})
            if run == args.runs - 1:
                seconds = asyncio.run(pay_many(desc, args.payments))
        finally:
            network.stop()
    ms = [s * 1000 for s in seconds]
    result["payments"] = {
        "count": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for i, b in enumerate(result["bring_up"], 1):
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in b.items() if k != "total")
        print(f"bring-up #{i}: {b['total']:.1f}s ({phases})")
    p = result["payments"]
    print(
        f"regtest payment (SendPaymentV2, buyer -> seller, 10 sat), n={p['count']}: "
        f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, min {p['min_ms']} ms, max {p['max_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
