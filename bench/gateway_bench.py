#!/usr/bin/env python3
"""Loopback benchmark of our L402 gateway beside the real Aperture, on regtest.

One run starts the regtest network (btcd + two LND), our demo upstream, our
gateway (`l402-gateway serve`, verified cache on), optionally a second one with
the cache off, and the real Aperture v0.5.0 selling the same route (10 sat, same
upstream, same seller LND). It buys one credential from each gateway, then
measures, with the same load generator (wrk by default) and in interleaved
rounds (direct, ours, Aperture, ...):

- paid requests at concurrency 32 (throughput, p50/p99) and 1 (latency);
- CPU per request of each gateway process (/proc/<pid>/stat utime+stime);
- challenges (402 + a fresh LND invoice) at concurrency 1, 8 and 32;
- RSS of each process after the load.

Without the Aperture source it measures our side alone and says so. Every
request must get the status it should (200 paid, 402 + WWW-Authenticate
unpaid); anything else fails the run (exit 1) after everything is stopped.
See bench/README.md for what the figures mean on a small machine.

Usage: .venv/bin/python bench/gateway_bench.py [--json] [--rounds 3] [--duration 5] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# gRPC core logs an INFO line whenever this process forks a child while a channel
# thread exists; it is harmless here (the children exec at once). Set before grpc loads.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if __package__ in (None, ""):  # run as a script: make `bench` and `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import issue19_figures, render_issue19
from bench.phase import BenchFailure, Load, PhaseResult, measure_phase
from bench.procstat import pss_mib, rss_mib, rss_parts, wait_for_quiet
from bench.pyload import run_python
from bench.report import (
    compare,
    environment,
    pick_median,
    render_table,
    target_summary,
)
from bench.stack import (
    PATH,
    Stack,
    aperture_binary,
    buy_credential,
    check_paid_body,
    log,
    start_aperture,
    start_gateway,
    start_minimal_proxy,
    start_upstream,
)
from bench.startup import measure_cli, measure_first_402
from bench.wrkload import run_wrk, wrk_path
from gateway.regtest.network import RegtestNetwork
from tests.support.aperture import aperture_required


@dataclass
class Settings:
    generator: str
    duration: float
    c1_duration: float
    concurrency: int
    max_requests: int
    warmup: float
    rounds: int
    challenge_duration: float
    challenge_concurrency: tuple[int, ...]
    quiet_wait: float
    uncached: bool
    startup_runs: int
    cli_runs: int


@dataclass(frozen=True)
class Target:
    name: str  # phase name prefix: direct, ours, ours_w1, ours_nocache, aperture, ...
    label: str
    port: int
    pid: int  # the process under test (0 for direct: the upstream is counted as such)
    authorization: str
    forwarded_authorization_headers: int  # what the demo upstream must see
    c1: bool = True  # also measured at concurrency 1


async def run_phase(
    stack: Stack, s: Settings, name: str, label: str, load: Load, conc: int, seconds: float,
    pids: dict[str, int],
) -> PhaseResult:  # fmt: skip
    async def run() -> Any:
        if s.generator == "wrk":
            return await run_wrk(load, conc, seconds, stack.workdir, name)
        return await run_python(load, conc, seconds, s.max_requests, name)

    result = await measure_phase(
        name=name, target=label, generator=s.generator, concurrency=conc,
        expected=load.expected, pids=pids, run=run,
    )  # fmt: skip
    log(
        f"{result.name}: {result.requests} req in {result.seconds:.1f}s, "
        f"{result.throughput_rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, target {result.cpu_us_per_request.get('target', 0):.0f} "
        f"us/req, others {result.others_cpu_percent:.0f}% CPU, load {result.loadavg:.2f}"
    )
    return result


async def start_targets(
    stack: Stack, s: Settings, binary: Path | None
) -> tuple[list[Target], int, int, dict[str, Any]]:
    """Every process under test, one credential bought from each seller.

    Returns (targets, upstream pid, upstream port, first purchase figures)."""
    upstream, upstream_port = await start_upstream(stack)
    ours, ours_port = await start_gateway(stack, "gateway", upstream_port, cache_size=10000)
    ours_w1, ours_w1_port = await start_gateway(
        stack, "gateway-w1", upstream_port, cache_size=10000, workers=1
    )
    quiet, quiet_port = await start_gateway(
        stack, "gateway-w1-quiet", upstream_port, cache_size=10000, workers=1,
        log_level="warning",
    )  # fmt: skip
    nocache = None
    if s.uncached:
        nocache = await start_gateway(stack, "gateway-nocache", upstream_port, cache_size=0)
    minimal, minimal_port = await start_minimal_proxy(stack, upstream_port)
    aperture = aperture_quiet = None
    if binary is not None:
        aperture = await start_aperture(stack, binary, upstream_port)
        aperture_quiet = await start_aperture(
            stack, binary, upstream_port, log_level="warning", name="aperture-quiet"
        )
        log(f"Aperture pid {aperture.pid} :{aperture.port}")
    log(f"upstream pid {upstream.pid} :{upstream_port}; our gateway pid {ours.pid} :{ours_port}")

    auth, challenge_s, pay_s = await buy_credential(stack, ours_port)
    log(f"bought from our gateway: challenge {challenge_s * 1000:.1f} ms, payment {pay_s:.2f} s")
    workers = os.cpu_count() or 1
    targets = [
        Target("direct", "upstream (no gateway)", upstream_port, 0, auth, 1),
        Target("ours", f"ours (--workers {workers}, default)", ours_port, ours.pid, auth, 1),
        Target("ours_w1", "ours (--workers 1)", ours_w1_port, ours_w1.pid, auth, 1),
        Target("ours_w1_quiet", "ours (w1, warning logs)", quiet_port, quiet.pid, auth, 1, False),
        Target("minimal", "minimal aiohttp proxy", minimal_port, minimal.pid, auth, 1),
    ]
    if nocache is not None:
        targets.append(
            Target("ours_nocache", "ours (cache off)", nocache[1], nocache[0].pid, auth, 1)
        )
    if aperture is not None and aperture_quiet is not None:
        ap_auth, ap_challenge_s, ap_pay_s = await buy_credential(stack, aperture.port)
        log(f"bought from Aperture: challenge {ap_challenge_s * 1e3:.1f} ms, pay {ap_pay_s:.2f} s")
        # Stock Aperture forwards two Authorization headers upstream (ours sends one).
        targets.append(
            Target("aperture", "Aperture v0.5.0", aperture.port, aperture.pid, ap_auth, 2)
        )
        # Aperture's SQLite store is its own per process: the quiet one sells its own token.
        quiet_auth, _, _ = await buy_credential(stack, aperture_quiet.port)
        targets.append(
            Target(
                "aperture_quiet", "Aperture (warn logs)", aperture_quiet.port,
                aperture_quiet.pid, quiet_auth, 2, False,
            )
        )  # fmt: skip
    for t in targets:
        await check_paid_body(
            Load(t.port, PATH, t.authorization, 200), t.name, t.forwarded_authorization_headers
        )
    purchase = {"first_challenge_ms": round(challenge_s * 1000, 3), "payment_s": round(pay_s, 3)}
    return targets, upstream.pid, upstream_port, purchase


async def measure(stack: Stack, s: Settings, binary: Path | None) -> dict[str, Any]:
    assert stack.descriptor is not None
    # All children are started before this process opens its first gRPC channel.
    targets, upstream_pid, upstream_port, purchase = await start_targets(stack, s, binary)
    # Mostly idle processes we started, so "others" is only what this run did not start.
    background = {
        "lnd_seller": stack.descriptor.seller.pid,
        "lnd_buyer": stack.descriptor.buyer.pid,
        "btcd": stack.descriptor.btcd_pid,
        "upstream": upstream_pid,
        "client": os.getpid() if s.generator == "python" else 0,
    }
    gateway_pids = {t.name: t.pid for t in targets if t.pid}

    def pids_for(target_pid: int) -> dict[str, int]:
        idle = {f"idle_{n}": p for n, p in gateway_pids.items() if p != target_pid}
        return background | idle | {"target": target_pid}

    busy_before = await wait_for_quiet(s.quiet_wait, log)
    rounds: dict[str, list[PhaseResult]] = {}
    for i in range(s.rounds):
        for conc, seconds, suffix in ((s.concurrency, s.duration, ""), (1, s.c1_duration, "_c1")):
            for t in targets:
                if suffix and not t.c1:
                    continue
                load = Load(t.port, PATH, t.authorization, 200)
                if i == 0 and s.warmup > 0:
                    await run_phase(
                        stack, s, f"{t.name}{suffix} warm-up", t.label, load, conc, s.warmup,
                        pids_for(t.pid),
                    )  # fmt: skip
                result = await run_phase(
                    stack, s, t.name + suffix, t.label, load, conc, seconds, pids_for(t.pid)
                )
                rounds.setdefault(result.name, []).append(result)

    # Challenges: every request mints a real invoice on the seller's LND.
    sellers = [t for t in targets if t.name in ("ours", "aperture")]
    for _ in range(s.rounds):
        for conc in s.challenge_concurrency:
            for t in sellers:
                load = Load(t.port, PATH, None, 402, need_header="www-authenticate")
                name = f"challenge_{t.name}_c{conc}"
                result = await run_phase(
                    stack, s, name, f"{t.label}: 402+invoice", load, conc, s.challenge_duration,
                    pids_for(t.pid),
                )  # fmt: skip
                rounds.setdefault(name, []).append(result)
    phases = {name: pick_median(results) for name, results in rounds.items()}

    memory = {t.name: memory_of(t.pid or upstream_pid) for t in targets}
    startup = await measure_first_402(
        stack, binary, upstream_port, s.startup_runs, os.cpu_count() or 1
    )
    cli = measure_cli(stack.workdir / "gateway.yaml", s.cli_runs)
    summary_targets = {t.name: target_summary(phases, t.name) for t in targets}
    summary_targets.setdefault("aperture", None)
    for name, figures in summary_targets.items():
        if figures is not None:
            figures["rss_mib_after_load"] = memory[name]["rss_mib"]
    summary: dict[str, Any] = {
        "targets": summary_targets,
        "ratios": {
            "ours_over_aperture": compare(summary_targets["ours"], summary_targets["aperture"]),
            "ours_over_direct": compare(summary_targets["ours"], summary_targets["direct"]),
        },
        "aperture_skipped": "",
        "credential_purchase": purchase,
        "machine_busy_percent_before_load": busy_before,
        "max_others_cpu_percent": max(p["others_cpu_percent"] for p in phases.values()),
        "memory": memory,
        "first_402": {name: t.summary() for name, t in startup.items()},
        "cli_start": {name: t.summary() for name, t in cli.items()},
        "all_rounds": {name: [asdict(r) for r in results] for name, results in rounds.items()},
    }  # fmt: skip
    summary["issue19"] = issue19_figures(rounds, summary)
    return {"phases": list(phases.values()), "summary": summary}


def memory_of(pid: int) -> dict[str, Any]:
    return {"rss_mib": rss_mib(pid), "rss_parts_mib": rss_parts(pid), "pss_mib": pss_mib(pid)}


def compile_bytecode() -> None:
    """Compile the gateway's modules as installing the package does (pip compiles them):
    with PYTHONDONTWRITEBYTECODE set, as on some development hosts, every process would
    otherwise compile every module from source at each start (~0.15 s each, measured)."""
    import compileall

    root = Path(__file__).resolve().parents[1] / "gateway"
    compileall.compile_dir(str(root), quiet=1, workers=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    p.add_argument(
        "--generator", choices=("wrk", "python"), default="wrk",
        help="load generator: wrk (default; bench/ensure-wrk.sh installs it) or python",
    )  # fmt: skip
    p.add_argument("--duration", type=float, default=5.0, help="seconds per c32 phase (5)")
    p.add_argument("--c1-duration", type=float, default=3.0, help="seconds per c1 phase (3)")
    p.add_argument("--concurrency", type=int, default=32, help="connections under load (32)")
    p.add_argument(
        "--max-requests", type=int, default=200_000, help="python generator: cap per phase"
    )
    p.add_argument("--warmup", type=float, default=1.0, help="discarded warm-up seconds (1)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument(
        "--challenge-duration", type=float, default=3.0, help="seconds per challenge phase (3)"
    )
    p.add_argument("--challenge-concurrency", default="1,8,32", help="challenge phases (1,8,32)")
    p.add_argument("--no-uncached", action="store_true", help="skip the cache-off gateway")
    p.add_argument(
        "--startup-runs", type=int, default=3, help="starts of each gateway to its first 402 (3)"
    )
    p.add_argument("--cli-runs", type=int, default=5, help="runs of each CLI command timed (5)")
    p.add_argument("--no-aperture", action="store_true", help="measure our side only")
    p.add_argument(
        "--quiet-wait", type=float, default=30.0,
        help="wait up to this many seconds for an idle machine before the load phases (30)",
    )  # fmt: skip
    p.add_argument(
        "--gateway-log-level", default="info",
        help="log level of both gateways (info, the default, logs one line per request)",
    )  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    for name in ("duration", "c1_duration", "concurrency", "max_requests", "rounds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    try:
        args.challenge_levels = tuple(int(c) for c in args.challenge_concurrency.split(","))
    except ValueError:
        p.error("--challenge-concurrency: comma-separated integers")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compile_bytecode()
    if args.generator == "wrk" and wrk_path() is None:
        log("wrk is not installed: run bench/ensure-wrk.sh, or use --generator python")
        return 2
    settings = Settings(
        generator=args.generator, duration=args.duration, c1_duration=args.c1_duration,
        concurrency=args.concurrency, max_requests=args.max_requests, warmup=args.warmup,
        rounds=args.rounds, challenge_duration=args.challenge_duration,
        challenge_concurrency=args.challenge_levels, quiet_wait=args.quiet_wait,
        uncached=not args.no_uncached, startup_runs=args.startup_runs, cli_runs=args.cli_runs,
    )  # fmt: skip
    binary, skipped = None, "--no-aperture" if args.no_aperture else ""
    if not args.no_aperture:
        log("finding or building Aperture (deploy/aperture/build.sh)")
        binary, skipped = aperture_binary()
        if binary is None:
            if aperture_required():
                log(f"Aperture is required (CI or L402_REQUIRE_APERTURE=1): {skipped}")
                return 1
            log(f"Aperture unavailable, measuring our side only: {skipped}")
    workdir = Path(tempfile.mkdtemp(prefix="l402-bench-"))
    stack = Stack(workdir=workdir, gateway_log_level=args.gateway_log_level)
    env = environment()
    ok = False
    try:
        log(f"starting the regtest network (work dir {workdir})")
        stack.network = RegtestNetwork()
        t0 = time.monotonic()
        stack.descriptor = stack.network.start()
        log(f"regtest network up in {time.monotonic() - t0:.1f}s")
        measured = asyncio.run(measure(stack, settings, binary))
        measured["summary"]["aperture_skipped"] = skipped
        env["loadavg_at_end"] = list(os.getloadavg())
        ok = True
    except BenchFailure as exc:
        log(f"FAILED: {exc}")
        for name, tail in stack.log_tails():
            log(f"--- {name} log tail ---\n{tail}")
        return 1
    finally:
        stack.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
    settings_out = asdict(settings) | {"gateway_log_level": args.gateway_log_level}
    report = {"environment": env, "settings": settings_out, **measured}
    table = render_table(report) + "\n\n" + render_issue19(report)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(report, indent=2))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
