#!/usr/bin/env python3
"""The seller LND's CPU per AddInvoice, by invoice option and by call pattern.

Why: behind our gateway the seller's LND works harder per challenge than behind
Aperture. Two causes are measured here, in one run against the same node:

- route hints: our routes mint with `private: true` by default
  (`private_invoices`), so LND looks up its private channels and adds hints to
  every invoice; Aperture's invoices carry none;
- an open SubscribeInvoices stream: LND prepares every added invoice for each
  subscriber (our settlement follower used to stay subscribed while minting;
  since e1e291d it subscribes only while no invoices are being added).

One run starts the regtest network (btcd + seller/buyer LND, a private channel
so private invoices carry hints) and mints invoices (10 sat, 1 h expiry) from
`--concurrency` callers on the gateway's own seller client (`LndSeller`, one
HTTP/2 connection, invoice macaroon) for `--duration` seconds per phase. The
variants {private: false, true} x {no subscription, one SubscribeInvoices
stream opened on a second connection and drained} run in interleaved rounds
(order reversed every other round). Per phase: invoices/s, the seller lnd
process's utime + stime (/proc/<pid>/stat) per invoice, this client's CPU per
invoice, the CPU of everything else on the machine, and the 1-minute load
average. Figures are medians over rounds with their ranges; ratios are each
variant against the baseline (private false, no subscription) of the same run.

Usage: .venv/bin/python bench/lnd_invoice_bench.py [--rounds 3] [--duration 5]
       [--concurrency 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.phase import BenchFailure
from bench.procstat import cpu_seconds, machine_cpu
from bench.report import environment, ratio
from bench.stack import Stack, log, on_regtest
from gateway.lightning.errors import BackendError
from gateway.lightning.lnd import LndClient, LndSeller

PRICE_MSAT = 10_000
EXPIRY = 3600
CATCH_UP_S = 10.0  # how long the subscriber may take to receive the last added invoices


@dataclass(frozen=True)
class Variant:
    name: str
    private: bool
    subscribed: bool


VARIANTS = (
    Variant("plain", False, False),  # the baseline: what Aperture asks of LND
    Variant("private", True, False),
    Variant("plain+sub", False, True),
    Variant("private+sub", True, True),
)
BASELINE = VARIANTS[0].name


class Subscriber:
    """One SubscribeInvoices stream (live only) on its own connection, drained and counted."""

    def __init__(self, client: LndSeller) -> None:
        self.client, self.received, self._wanted = client, 0, 0
        self._enough = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _drain(self) -> None:
        async for _ in self.client.settlements(0):
            self.received += 1
            if self._wanted and self.received >= self._wanted:
                self._enough.set()

    async def open(self) -> None:
        self.received, self._wanted = 0, 0
        self._enough.clear()
        self._task = asyncio.create_task(self._drain())
        await asyncio.sleep(0.5)  # the stream is registered in LND before the phase begins
        if self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            raise BenchFailure(f"SubscribeInvoices ended before the phase: {error!r}")

    async def caught_up(self, count: int) -> None:
        """Wait until the stream delivered all `count` invoices added in the phase."""
        self._wanted = count
        if self.received < count:
            try:
                await asyncio.wait_for(self._enough.wait(), CATCH_UP_S)
            except TimeoutError:
                raise BenchFailure(f"the subscriber got {self.received} of {count}") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def mint(seller: LndSeller, private: bool, concurrency: int, seconds: float) -> int:
    """Closed loop of AddInvoice from `concurrency` callers for `seconds`; invoices added."""
    added = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal added
        while time.perf_counter() < deadline:
            try:
                await seller.add_invoice(PRICE_MSAT, "lnd invoice bench", EXPIRY, private)
            except BackendError as exc:
                raise BenchFailure(f"AddInvoice failed: {exc}") from None
            added += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return added


async def phase(
    lnd_pid: int, seller: LndSeller, sub: Subscriber, variant: Variant, conc: int, seconds: float
) -> dict[str, float]:
    """One variant for `seconds`: LND's and this client's CPU per invoice, rate, load."""
    if variant.subscribed:
        await sub.open()
    else:
        await asyncio.sleep(0.5)  # the same pause: the last phase's work is done
    try:
        lnd0, own0, (busy0, _) = cpu_seconds(lnd_pid), time.process_time(), machine_cpu()
        t0 = time.perf_counter()
        count = await mint(seller, variant.private, conc, seconds)
        wall = time.perf_counter() - t0
        if variant.subscribed:  # LND's work for the subscriber ends when it has sent them all
            await sub.caught_up(count)
        elapsed = time.perf_counter() - t0
        lnd, own = cpu_seconds(lnd_pid) - lnd0, time.process_time() - own0  # ours, not children
        busy = machine_cpu()[0] - busy0
    finally:
        await sub.close()
    if count == 0:
        raise BenchFailure(f"{variant.name}: no invoice added in {wall:.1f}s")
    return {
        "invoices": count,
        "invoices_per_s": round(count / wall, 1),
        "lnd_us": round(1e6 * lnd / count, 1),
        "client_us": round(1e6 * own / count, 1),
        "others_percent": round(100 * max(busy - lnd - own, 0.0) / elapsed, 1),
        "loadavg": round(os.getloadavg()[0], 2),
    }


async def check_hints(stack: Stack, seller: LndSeller) -> None:
    """Private invoices carry route hints and plain ones none, or the comparison is moot."""
    assert stack.descriptor is not None
    node = stack.descriptor.buyer
    lnd = LndClient.connect(
        node.rpc, tls_cert=Path(node.tls_cert), macaroon=Path(node.admin_macaroon)
    )
    try:
        for private in (False, True):
            added = await seller.add_invoice(PRICE_MSAT, "hint check", EXPIRY, private)
            hints = (await lnd.decode_pay_req(added.payment_request)).num_route_hints
            if (hints > 0) != private:
                raise BenchFailure(f"private={private}: an invoice with {hints} route hints")
    finally:
        await lnd.close()


def spread(values: list[float]) -> dict[str, float]:
    pick = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return {k: round(v, 2) for k, v in pick.items()}


def summarize(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians and ranges per variant; ratios to the baseline (medians, and per round)."""
    out: dict[str, Any] = {}
    base = samples[BASELINE]
    base_lnd = statistics.median(p["lnd_us"] for p in base)
    base_rate = statistics.median(p["invoices_per_s"] for p in base)
    for name, phases in samples.items():
        figures: dict[str, Any] = {k: spread([p[k] for p in phases]) for k in phases[0]}
        figures["lnd_us_ratio"] = {
            "of_medians": ratio(figures["lnd_us"]["median"], base_lnd),
            "per_round": [
                ratio(p["lnd_us"], b["lnd_us"]) for p, b in zip(phases, base, strict=True)
            ],
        }
        figures["rate_ratio"] = ratio(figures["invoices_per_s"]["median"], base_rate)
        out[name] = figures
    return out


async def measure(stack: Stack, args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    assert stack.descriptor is not None
    node = stack.descriptor.seller
    clients = [
        LndSeller.connect(node.rpc, tls_cert=Path(node.tls_cert), macaroon=node.invoice_macaroon)
        for _ in range(2)
    ]
    seller, sub = clients[0], Subscriber(clients[1])
    samples: dict[str, list[dict[str, float]]] = {v.name: [] for v in VARIANTS}
    try:
        await check_hints(stack, seller)
        log(f"seller lnd pid {node.pid}; warming up")
        for variant in VARIANTS:  # connections, LND's caches, code paths
            await phase(node.pid, seller, sub, variant, args.concurrency, 1.0)
        for round_no in range(args.rounds):
            for variant in VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS)):
                result = await phase(
                    node.pid, seller, sub, variant, args.concurrency, args.duration
                )
                samples[variant.name].append(result)
                log(
                    f"round {round_no + 1} {variant.name}: {result['invoices_per_s']:.0f}/s, "
                    f"LND {result['lnd_us']:.0f} us/invoice, load {result['loadavg']:.2f}"
                )
    finally:
        for client in clients:
            await client.close()
    env["loadavg_at_end"] = list(os.getloadavg())
    return {
        "environment": env,
        "settings": {k: getattr(args, k) for k in ("rounds", "duration", "concurrency")},
        "variants": summarize(samples),
        "samples": samples,
    }


def render(report: dict[str, Any]) -> str:
    env, s = report["environment"], report["settings"]
    load = env["loadavg_at_start"][0], env["loadavg_at_end"][0]
    lines = [
        f"Seller LND CPU per AddInvoice  {env['time_utc']}  commit {env['commit'] or '?'}  "
        f"{env['cpus']} CPUs  concurrency {s['concurrency']}  {s['rounds']} rounds of "
        f"{s['duration']:g} s; 1-min load {load[0]:.2f} at start, {load[1]:.2f} at end",
        "",
    ]
    head = (
        f"{'variant':<12} {'inv/s':>6} {'(min-max)':>11} {'LND us/inv':>10} {'(min-max)':>11} "
        f"{'x base':>6} {'(rounds)':>17} {'client us':>9} {'others%':>7} {'load':>9}"
    )
    lines += [head, "-" * len(head)]
    for name, f in report["variants"].items():
        rate, lnd, r = f["invoices_per_s"], f["lnd_us"], f["lnd_us_ratio"]
        within = [x for x in r["per_round"] if x is not None] or [0.0]
        rounds = f"{min(within):.2f}-{max(within):.2f}"
        lines.append(
            f"{name:<12} {rate['median']:>6.0f} {rate['min']:>5.0f}-{rate['max']:<5.0f} "
            f"{lnd['median']:>10.0f} {lnd['min']:>5.0f}-{lnd['max']:<5.0f} "
            f"{r['of_medians']:>6.2f} {rounds:>17} {f['client_us']['median']:>9.0f} "
            f"{f['others_percent']['median']:>7.0f} "
            f"{f['loadavg']['min']:>4.2f}-{f['loadavg']['max']:<4.2f}"
        )
    lines.append(
        f"x base: LND us/invoice over {BASELINE}'s (private false, no subscription), of the "
        "medians; (rounds): the same ratio within each round, min-max. +sub: one open "
        "SubscribeInvoices stream while minting. others%: CPU outside LND and this client "
        "(100 = one core)."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="A phase: one variant for --duration seconds. The table goes to stdout.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase (5)")
    parser.add_argument("--concurrency", type=int, default=8, help="AddInvoice in flight (8)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    args = parser.parse_args()
    try:
        env = environment()  # the load average before the network starts
        report = asyncio.run(on_regtest("l402-lnd-invoice-bench-", lambda s: measure(s, args, env)))
    except BenchFailure as exc:
        print(f"lnd invoice bench failed: {exc}", file=sys.stderr)
        return 1
    table = render(report)
    if args.json:
        print(json.dumps(report, indent=2))
    print(table, file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
