#!/usr/bin/env python3
"""CPU per metered paid request against an unmetered one, in one gateway, in one run.

One run starts the regtest network (btcd + two LND), the demo upstream
(`signal-upstream`: its OpenAI-compatible `/v1/chat/completions`) and one
gateway (`l402-gateway serve --workers 1`, SQLite store) selling the same
upstream twice:

- `plain`:   POST /plain/v1/chat/completions, 10 sat, a reusable token;
- `metered`: POST /metered/v1/chat/completions, a bundle of 10^12 tokens for
  10 sat: each request reads its body's `max_tokens`, reserves it, has its
  answer's tail read for `usage`, and settles (two store transactions, which
  the SQLite writer group-commits under load).

It buys one credential per route, then sends the same request body (non-stream
JSON, `max_tokens` 16) to each in interleaved rounds at the same concurrency,
and measures the gateway process's CPU (utime + stime from /proc) per
request. Every answer must be 200 (and carry L402-Balance on the metered
route); anything else fails the run. The issue's target: metering adds at
most 15% CPU per paid request.

Usage: .venv/bin/python bench/meter_bench.py [--rounds 3] [--duration 6] [--concurrency 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.phase import BenchFailure
from bench.procstat import cpu_seconds
from bench.pyload import REQUEST_TIMEOUT, Connection
from bench.stack import HOST, Stack, log, on_regtest, serve_file, start_upstream
from gateway.buyer import parse_challenge
from gateway.lightning.lnd import LndClient
from gateway.regtest.processes import free_port

ROUTES = ("plain", "metered")
BODY = json.dumps(
    {"model": "demo", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 16}
).encode()
USED = 3 + 16  # the demo upstream's usage for BODY


def gateway_config(stack: Stack, upstream_port: int, public: int, admin: int) -> str:
    assert stack.descriptor is not None
    seller = stack.descriptor.seller
    routes = []
    for name in ROUTES:
        price = (
            "bundle: {units: 1000000000000, unit: tokens, price_sats: 10}"
            if name == "metered"
            else "price_sats: 10"
        )
        routes.append(
            f"""  - name: {name}
    path: '^/{name}/v1/chat/completions$'
    methods: [POST]
    upstream: "http://{HOST}:{upstream_port}"
    path_rewrite: {{pattern: '^/{name}', replacement: ''}}
    private_invoices: false
    {price}
"""
        )
    return f"""\
listen: {{public: "{HOST}:{public}", admin: "{HOST}:{admin}"}}
lnd: {{host: "{seller.rpc}", tls_cert: "{seller.tls_cert}", macaroon: "{seller.invoice_macaroon}"}}
store: {{url: "sqlite:///{stack.workdir}/tokens.db"}}
challenge_rate_limit: {{per_minute: 0}}
routes:
{"".join(routes)}"""


def post(path: str, port: int, authorization: str | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(BODY)}",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + BODY


async def buy(stack: Stack, port: int, path: str) -> str:
    assert stack.descriptor is not None
    conn = Connection(port)
    try:
        reply = await conn.request(post(path, port, None))
    finally:
        await conn.close()
    if reply.status != 402:
        raise BenchFailure(f"{path}: expected 402, got {reply.status}: {reply.body[:200]!r}")
    challenge = parse_challenge([reply.headers[b"www-authenticate"].decode()])
    buyer = stack.descriptor.buyer
    lnd = LndClient.connect(
        buyer.rpc, tls_cert=Path(buyer.tls_cert), macaroon=Path(buyer.admin_macaroon)
    )
    try:
        payment = await lnd.pay_invoice(challenge.invoice, fee_limit_msat=1000, timeout_seconds=60)
    finally:
        await lnd.close()
    return f"L402 {challenge.macaroon}:{payment.preimage.hex()}"


async def load(
    port: int, raw: bytes, metered: bool, concurrency: int, seconds: float
) -> tuple[int, float]:
    """Closed loop for `seconds`: (requests, wall seconds); every answer is checked."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        conn = Connection(port)
        try:
            while time.perf_counter() < deadline:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    reply = await conn.request(raw)
                if reply.status != 200:
                    raise BenchFailure(f"status {reply.status}: {reply.body[:200]!r}")
                if metered and b"l402-balance" not in reply.headers:
                    raise BenchFailure("a metered answer without L402-Balance")
                done += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - t0


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    upstream, upstream_port = await start_upstream(stack)
    public, admin = free_port(), free_port()
    config = stack.workdir / "gateway.yaml"
    config.write_text(gateway_config(stack, upstream_port, public, admin))
    gateway = await serve_file(stack, "gateway", config, admin, workers=1, log_level="warning")
    raws = {}
    for name in ROUTES:
        path = f"/{name}/v1/chat/completions"
        raws[name] = post(path, public, await buy(stack, public, path))
    log(f"gateway pid {gateway.pid}, upstream pid {upstream.pid}; credentials bought")
    for name in ROUTES:  # warm-up: connections, caches, code paths
        await load(public, raws[name], name == "metered", args.concurrency, 1.0)
    per_request: dict[str, list[float]] = {name: [] for name in ROUTES}
    rates: dict[str, list[float]] = {name: [] for name in ROUTES}
    for round_no in range(args.rounds):
        for name in ROUTES if round_no % 2 == 0 else reversed(ROUTES):
            await asyncio.sleep(0.5)  # let the last phase's settles finish
            before = cpu_seconds(gateway.pid)
            count, wall = await load(
                public, raws[name], name == "metered", args.concurrency, args.duration
            )
            used = cpu_seconds(gateway.pid) - before
            per_request[name].append(1e6 * used / count)
            rates[name].append(count / wall)
            log(
                f"round {round_no + 1} {name}: {count} requests, {count / wall:.0f} req/s, "
                f"{1e6 * used / count:.0f} us CPU each"
            )
    plain = statistics.median(per_request["plain"])
    metered = statistics.median(per_request["metered"])
    return {
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "cpu_us_per_request": {"plain": round(plain, 1), "metered": round(metered, 1)},
        "requests_per_s": {n: round(statistics.median(r), 1) for n, r in rates.items()},
        "samples_us": {n: [round(v, 1) for v in vs] for n, vs in per_request.items()},
        "metering_adds_percent": round(100 * (metered - plain) / plain, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return await on_regtest("l402-meter-bench-", lambda stack: measure(stack, args))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(args))
    except BenchFailure as exc:
        print(f"meter bench failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    cpu = result["cpu_us_per_request"]
    print(
        f"CPU per paid request (median of {args.rounds} rounds, concurrency "
        f"{args.concurrency}): unmetered {cpu['plain']:.0f} us, metered {cpu['metered']:.0f} us "
        f"(metering adds {result['metering_adds_percent']:+.1f}%; target <= +15%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
