#!/usr/bin/env python3
"""CPU per paid request by credential: L402 beside the Payment scheme's charge and session.

One run starts the regtest network, the demo upstream and one gateway
(`l402-gateway serve --workers 1`, SQLite store) selling one GET route
(`schemes: [l402, payment]`, 1 sat, sessions on) and its per-request twin
(`token_mode: per-request`). It buys, through the seller's real LND:

- `l402`: one reusable L402 token (the hot path: a cached verification);
- `l402-single`: one single-use L402 token per request (a lease taken and
  committed in the store for each);
- `charge`: one Payment `charge` credential per request (single-use by the
  draft: the challenge is verified, the row consumed, a receipt added);
- `session`: one Payment session, then the same bearer credential on every
  request (a unit of its balance reserved and debited in the store for each).

Each kind is measured in interleaved rounds at the same concurrency over the
same number of requests, as the gateway process's CPU (utime + stime from
/proc) per request; every answer must be 200 (a Payment-Receipt on the Payment
ones). Single-use credentials are bought before the measurement, never during.

Usage: .venv/bin/python bench/payment_bench.py [--rounds 3] [--requests 600]
       [--concurrency 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench.phase import BenchFailure
from bench.procstat import cpu_seconds
from bench.pyload import REQUEST_TIMEOUT, Connection
from bench.stack import HOST, Stack, log, on_regtest, serve_file, start_upstream
from gateway.buyer import LndPayer, SpendPolicy, parse_challenge
from gateway.buyer.offers import charge_offer, first_offer
from gateway.buyer.session import LndReturnInvoices, PaymentSession
from gateway.lightning.lnd import LndClient
from gateway.payment.credential import Credential, format_authorization
from gateway.payment.payloads import ChargePayload
from gateway.regtest.processes import free_port

KINDS = ("l402", "l402-single", "charge", "session")
REUSABLE = "/signal"
SINGLE = "/single"
RECEIPT = b"payment-receipt"
PAYING = 8  # purchases in flight at once while buying single-use credentials


def gateway_config(stack: Stack, upstream_port: int, public: int, admin: int) -> str:
    assert stack.descriptor is not None
    seller = stack.descriptor.seller
    return f"""\
listen: {{public: "{HOST}:{public}", admin: "{HOST}:{admin}"}}
lnd:
  host: "{seller.rpc}"
  tls_cert: "{seller.tls_cert}"
  macaroon: "{seller.invoice_macaroon}"
  refund_macaroon: "{seller.payer_macaroon}"
store: {{url: "sqlite:///{stack.workdir}/tokens.db"}}
challenge_rate_limit: {{per_minute: 0}}
payment:
  # A deposit covers every bearer request of the run (1 sat each).
  sessions: {{enabled: true, deposit_multiplier: 5000}}
routes:
  - name: signal
    path: '^{REUSABLE}$'
    upstream: "http://{HOST}:{upstream_port}"
    path_rewrite: {{pattern: '.*', replacement: /ep212/premium-signal}}
    price_sats: 1
    private_invoices: false
    schemes: [l402, payment]
  - name: single
    path: '^{SINGLE}$'
    upstream: "http://{HOST}:{upstream_port}"
    path_rewrite: {{pattern: '.*', replacement: /ep212/premium-signal}}
    price_sats: 1
    private_invoices: false
    token_mode: per-request
"""


def get(path: str, port: int, authorization: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: {authorization}\r\n\r\n"
    ).encode()


class Buyer:
    """Purchases through the buyer's LND (not measured)."""

    def __init__(self, lnd: LndClient, http: aiohttp.ClientSession, base: str) -> None:
        self.lnd, self.http, self.base = lnd, http, base
        self._paying = asyncio.Semaphore(PAYING)

    async def _challenge(self, path: str) -> list[str]:
        async with self.http.get(self.base + path) as resp:
            if resp.status != 402:
                raise BenchFailure(f"{path}: expected 402, got {resp.status}")
            return resp.headers.getall("WWW-Authenticate")

    async def _pay(self, invoice: str) -> bytes:
        async with self._paying:
            paid = await self.lnd.pay_invoice(invoice, fee_limit_msat=1000, timeout_seconds=60)
        return paid.preimage

    async def l402(self, path: str) -> str:
        challenge = parse_challenge(await self._challenge(path))
        preimage = await self._pay(challenge.invoice)
        return f"L402 {challenge.macaroon}:{preimage.hex()}"

    async def charge(self) -> str:
        offer = charge_offer(first_offer(await self._challenge(REUSABLE), "charge"))
        preimage = await self._pay(offer.request.invoice)
        return format_authorization(Credential(offer.params, ChargePayload(preimage).to_json()))

    async def many(self, count: int, kind: str) -> list[str]:
        buy = self.charge if kind == "charge" else lambda: self.l402(SINGLE)
        return list(await asyncio.gather(*(buy() for _ in range(count))))


async def load(port: int, raws: Sequence[bytes], payment: bool, concurrency: int) -> float:
    """Send every request once over `concurrency` connections; wall seconds."""
    queue = list(reversed(raws))

    async def worker() -> None:
        conn = Connection(port)
        try:
            while queue:
                raw = queue.pop()
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    reply = await conn.request(raw)
                if reply.status != 200:
                    raise BenchFailure(f"status {reply.status}: {reply.body[:200]!r}")
                if payment and RECEIPT not in reply.headers:
                    raise BenchFailure("a Payment-scheme answer without Payment-Receipt")
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    assert stack.descriptor is not None
    upstream, upstream_port = await start_upstream(stack)
    public, admin = free_port(), free_port()
    config = stack.workdir / "gateway.yaml"
    config.write_text(gateway_config(stack, upstream_port, public, admin))
    gateway = await serve_file(stack, "gateway", config, admin, workers=1, log_level="warning")
    node = stack.descriptor.buyer
    lnd = LndClient.connect(
        node.rpc, tls_cert=Path(node.tls_cert), macaroon=Path(node.admin_macaroon)
    )
    base = f"http://{HOST}:{public}"
    n = args.requests
    warm = args.concurrency * 4
    try:
        async with aiohttp.ClientSession() as http:
            buyer = Buyer(lnd, http, base)
            t0 = time.perf_counter()
            reusable = await buyer.l402(REUSABLE)
            singles = await buyer.many(warm + n * args.rounds, "l402-single")
            charges = await buyer.many(warm + n * args.rounds, "charge")
            policy = SpendPolicy(
                max_spend_msats=10_000, allowed_hosts=[HOST], expected_network="bcrt",
                max_deposit_msats=10_000_000,
            )  # fmt: skip
            session = PaymentSession(
                http, LndPayer(lnd), LndReturnInvoices(lnd), policy, base + REUSABLE,
                host=HOST, request_id="bench",
            )  # fmt: skip
            await session.open()
            bearer = await session.bearer_authorization()
            log(f"bought {2 * len(singles) + 2} credentials in {time.perf_counter() - t0:.0f}s")
            raws: dict[str, list[bytes]] = {
                "l402": [get(REUSABLE, public, reusable)] * n,
                "session": [get(REUSABLE, public, bearer)] * n,
            }
            spare = {
                "l402-single": [get(SINGLE, public, a) for a in singles],
                "charge": [get(REUSABLE, public, a) for a in charges],
            }
            for kind in KINDS:  # warm-up: connections, caches, code paths
                batch = raws[kind][:warm] if kind in raws else spare[kind][:warm]
                if kind in spare:
                    del spare[kind][:warm]
                await load(public, batch, kind in ("charge", "session"), args.concurrency)
            per_request: dict[str, list[float]] = {k: [] for k in KINDS}
            rates: dict[str, list[float]] = {k: [] for k in KINDS}
            for round_no in range(args.rounds):
                for kind in KINDS if round_no % 2 == 0 else tuple(reversed(KINDS)):
                    if kind in spare:
                        batch, spare[kind] = spare[kind][:n], spare[kind][n:]
                    else:
                        batch = raws[kind]
                    await asyncio.sleep(0.5)  # the last phase's writes are done
                    before = cpu_seconds(gateway.pid)
                    wall = await load(
                        public, batch, kind in ("charge", "session"), args.concurrency
                    )
                    used = cpu_seconds(gateway.pid) - before
                    per_request[kind].append(1e6 * used / len(batch))
                    rates[kind].append(len(batch) / wall)
                    log(f"round {round_no + 1} {kind}: {len(batch) / wall:.0f} req/s, "
                        f"{1e6 * used / len(batch):.0f} us CPU each")  # fmt: skip
            closed = await session.close()
            if closed.status != 200:
                raise BenchFailure(f"session close answered {closed.status}")
    finally:
        await lnd.close()
    cpu = {k: round(statistics.median(v), 1) for k, v in per_request.items()}
    return {
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "requests_per_round": n,
        "cpu_us_per_request": cpu,
        "requests_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "samples_us": {k: [round(x, 1) for x in v] for k, v in per_request.items()},
        "ratio_to_l402": {k: round(cpu[k] / cpu["l402"], 2) for k in KINDS},
        "upstream_pid": upstream.pid,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return await on_regtest("l402-payment-bench-", lambda stack: measure(stack, args))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=600, help="per kind and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(args))
    except BenchFailure as exc:
        print(f"payment bench failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    cpu, ratio = result["cpu_us_per_request"], result["ratio_to_l402"]
    print(f"CPU per paid request (median of {args.rounds} rounds of {args.requests}, "
          f"concurrency {args.concurrency}):")  # fmt: skip
    for kind in KINDS:
        print(f"  {kind:<12} {cpu[kind]:>7.0f} us  x{ratio[kind]:.2f} of L402's (reusable token)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
