#!/usr/bin/env python3
"""gRPC through our gateway beside the real Aperture v0.5.0, on regtest, 127.0.0.1 only.

One run starts the regtest network (btcd + seller/buyer LND), two grpcio echo
upstreams (h2c and TLS: Aperture reaches gRPC upstreams over TLS only), our
gateway as `l402-gateway serve` three times (`--workers 1` to the h2c
upstream, `--workers 1` to the TLS upstream, the default 2 workers to the h2c
upstream) and Aperture (TLS upstream), all selling the same gRPC route on the
same seller LND. It buys one credential from each over gRPC (the unpaid call's
trailers carry the challenge), then measures in interleaved rounds with the
same grpcio client, the whole paid path (L402 check, metrics, access line):

- unary: 100 B calls at concurrency 16 over one HTTP/2 connection (`unary`),
  and over `--connections` connections (`unary_conns`, 4 by default: what
  SO_REUSEPORT spreads over workers; one connection stays in one worker);
- download: one server-streaming call of 256 MiB (1 MiB messages).

Gateway CPU is read from /proc (the process and its workers) around every
phase: CPU per call and per MiB do not move with the machine's other load the
way throughput does; every figure carries the load average when it was taken.
The table shows each target's median round, its range over rounds, and the
ratios to Aperture. bench/h2engine_bench.py measures the HTTP/2 engine alone.

Usage: .venv/bin/python bench/grpc_bench.py [--json] [--rounds 3] [--duration 5] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from bench.grpc_upstream import MESSAGE, SERVICE, self_signed
from bench.phase import BenchFailure
from bench.procstat import CLK_TCK, cpu_seconds, tree
from bench.report import environment
from bench.stack import Stack, aperture_binary, cli_argv, log, wait_http_ok
from gateway.buyer import parse_challenge
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import RegtestNetwork
from gateway.regtest.processes import ManagedProcess, free_port
from tests.support.aperture import ApertureProcess, ApertureService, aperture_required

HOST = "127.0.0.1"
PRICE_SATS = 10
CALL_TIMEOUT = 30.0
OPTIONS = [("grpc.max_receive_message_length", 8 * MESSAGE), ("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Upstream:
    name: str
    process: asyncio.subprocess.Process
    port: int

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@dataclass
class Target:
    name: str
    label: str
    port: int
    pid: int
    authorization: str = ""


@dataclass
class Phase:
    phase: str
    target: str
    calls: int
    seconds: float
    bytes: int
    cpu_s: float
    system_cpu_s: float  # of cpu_s, in the kernel (socket calls, TLS is user time)
    upstream_cpu_s: float
    loadavg: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / self.seconds / MESSAGE if self.seconds else 0.0

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.calls * 1e6 if self.calls else 0.0

    @property
    def cpu_ms_per_mib(self) -> float:
        return self.cpu_s / (self.bytes / MESSAGE) * 1e3 if self.bytes else 0.0


# ---- processes ----


async def start_upstream(workdir: Path, tls: bool) -> Upstream:
    argv = [sys.executable, str(Path(__file__).with_name("grpc_upstream.py"))]
    if tls:
        key, cert = self_signed(workdir)
        argv += ["--cert", str(cert), "--key", str(key)]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = await process.stdout.readline()
    if not line.startswith(b"PORT "):
        raise BenchFailure(f"upstream did not start: {line!r}")
    return Upstream("tls" if tls else "h2c", process, int(line.split()[1]))


async def start_gateway(
    stack: Stack, name: str, upstream: str, workers: int, ca_file: Path | None
) -> tuple[ManagedProcess, int]:
    assert stack.descriptor is not None
    seller = stack.descriptor.seller
    public, admin = free_port(), free_port()
    config = stack.workdir / f"{name}.yaml"
    ca = f"\n    upstream_ca_file: '{ca_file}'" if ca_file else ""
    config.write_text(
        f"""\
listen: {{public: "{HOST}:{public}", admin: "{HOST}:{admin}"}}
lnd: {{host: "{seller.rpc}", tls_cert: "{seller.tls_cert}", macaroon: "{seller.invoice_macaroon}"}}
store: {{url: "sqlite:///{stack.workdir}/{name}.db"}}
routes:
  - name: echo
    path: '^/{SERVICE}/'
    upstream: "{upstream}"
    price_sats: {PRICE_SATS}
    private_invoices: false{ca}
"""
    )
    argv = cli_argv("serve", "--config", str(config), "--workers", str(workers))
    proc = ManagedProcess(name, argv, stack.workdir / f"{name}.log", detached=False)
    stack.processes.append(proc)
    await wait_http_ok(proc, f"http://{HOST}:{admin}/readyz")
    return proc, public


async def buy(stack: Stack, port: int) -> str:
    """One real purchase over gRPC: the unpaid call's trailers, a payment, the credential."""
    assert stack.descriptor is not None
    async with grpc.aio.insecure_channel(f"{HOST}:{port}", options=OPTIONS) as channel:
        try:
            await channel.unary_unary(f"/{SERVICE}/Unary")(b"x", timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            values = [v for k, v in exc.trailing_metadata() or () if k == "www-authenticate"]
            if not values:
                raise BenchFailure(f"no challenge from :{port}: {exc.code()}") from None
        else:
            raise BenchFailure(f"an unpaid call through :{port} succeeded")
    challenge = parse_challenge([str(v) for v in values])
    buyer = stack.descriptor.buyer
    lnd = LndClient.connect(
        buyer.rpc, tls_cert=Path(buyer.tls_cert), macaroon=Path(buyer.admin_macaroon)
    )
    try:
        payment = await lnd.pay_invoice(challenge.invoice, fee_limit_msat=1000, timeout_seconds=60)
    finally:
        await lnd.close()
    return f"L402 {challenge.macaroon}:{payment.preimage.hex()}"


# ---- load ----


async def unary_load(
    channels: list[grpc.aio.Channel], auth: str, args: argparse.Namespace, duration: float
) -> tuple[int, float]:
    payload = b"x" * args.payload
    metadata = (("authorization", auth),)
    stop_at = time.perf_counter() + duration
    calls = 0

    async def worker(channel: grpc.aio.Channel) -> None:
        nonlocal calls
        call = channel.unary_unary(f"/{SERVICE}/Unary")
        while time.perf_counter() < stop_at:
            reply = await call(payload, metadata=metadata, timeout=CALL_TIMEOUT)
            if reply != payload:
                raise BenchFailure("unary reply differs from the request")
            calls += 1

    per_channel = max(1, args.concurrency // len(channels))
    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in channels for _ in range(per_channel)))
    return calls, time.perf_counter() - started


async def download(channel: grpc.aio.Channel, auth: str, mib: int) -> tuple[int, float]:
    call = channel.unary_stream(f"/{SERVICE}/Download")
    started = time.perf_counter()
    total = 0
    metadata = (("authorization", auth),)
    async for message in call(str(mib).encode(), metadata=metadata, timeout=CALL_TIMEOUT * 4):
        total += len(message)
    if total != mib * MESSAGE:
        raise BenchFailure(f"download got {total} bytes")
    return total, time.perf_counter() - started


async def run_phase(
    phase: str, target: Target, upstream: Upstream, args: argparse.Namespace, warm: bool = False
) -> Phase:
    connections = args.connections if phase == "unary_conns" else 1
    channels = [grpc.aio.insecure_channel(f"{HOST}:{target.port}", options=OPTIONS)
                for _ in range(connections)]  # fmt: skip
    try:
        if warm or args.warmup:  # connections up, code paths and allocator warm
            await unary_load(channels, target.authorization, args, args.warmup or 0.5)
        spy = await _py_spy(args, phase, target)
        before = cpu_seconds(target.pid), cpu_seconds(upstream.process.pid), system_cpu(target.pid)
        if phase == "download":
            size, seconds = await download(channels[0], target.authorization, args.stream_mib)
            calls = 1
        else:
            calls, seconds = await unary_load(channels, target.authorization, args, args.duration)
            size = calls * args.payload * 2
        after = cpu_seconds(target.pid), cpu_seconds(upstream.process.pid), system_cpu(target.pid)
        if spy is not None:
            await spy.wait()
    finally:
        for channel in channels:
            await channel.close()
    return Phase(
        phase, target.name, calls, seconds, size, after[0] - before[0], after[2] - before[2],
        after[1] - before[1], os.getloadavg()[0],
    )  # fmt: skip


def system_cpu(pid: int) -> float:
    """Kernel CPU seconds (stime) of a process and its workers."""
    total = 0
    for member in tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        total += int(stat[stat.rindex(")") + 2 :].split()[12])
    return total / CLK_TCK


async def _py_spy(
    args: argparse.Namespace, phase: str, target: Target
) -> asyncio.subprocess.Process | None:
    """`--py-spy DIR`: sample our gateway (and its workers) during its phases, once each."""
    if not args.py_spy or target.name == "aperture":
        return None
    out = Path(args.py_spy) / f"{target.name}-{phase}.txt"
    if out.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = max(1, int(args.duration if phase != "download" else 2))
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(target.pid),
        "--subprocesses", "--duration", str(seconds), "--rate", "250", "--format", "raw",
        "--output", str(out), "--nonblocking", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


# ---- the run ----


async def measure(stack: Stack, args: argparse.Namespace, binary: Path | None) -> dict[str, Any]:
    h2c = await start_upstream(stack.workdir, tls=False)
    tls = await start_upstream(stack.workdir, tls=True)
    cert = stack.workdir / "upstream-cert.pem"
    try:
        targets: list[tuple[Target, Upstream]] = []
        for name, label, upstream, workers in (
            ("ours_h2c", "ours, h2c upstream, --workers 1", h2c, 1),
            ("ours_tls", "ours, TLS upstream, --workers 1", tls, 1),
            ("ours_h2c_w2", "ours, h2c upstream, 2 workers", h2c, 2),
        ):
            if name not in args.targets:
                continue
            scheme = "https" if upstream is tls else "http"
            proc, port = await start_gateway(
                stack, name, f"{scheme}://{HOST}:{upstream.port}", workers,
                cert if upstream is tls else None,
            )  # fmt: skip
            targets.append((Target(name, label, port, proc.pid), upstream))
        if binary is not None and "aperture" in args.targets:
            service = ApertureService(
                "echo", f"{HOST}:{tls.port}", f"^/{SERVICE}/.*", PRICE_SATS, protocol="https"
            )
            aperture = await start_aperture(stack, binary, service)
            targets.append((Target("aperture", "Aperture v0.5.0, TLS upstream", aperture.port,
                                   aperture.pid), tls))  # fmt: skip
        for target, _ in targets:
            target.authorization = await buy(stack, target.port)
            log(f"bought a credential from {target.name} (pid {target.pid}, :{target.port})")
        rounds: list[Phase] = []
        for number in range(args.rounds):
            for phase in args.phases:
                for target, upstream in targets:
                    if phase == "unary_conns" and target.name == "ours_tls":
                        continue
                    result = await run_phase(phase, target, upstream, args)
                    rounds.append(result)
                    cpu = (f"{result.cpu_ms_per_mib:6.2f} ms/MiB" if phase == "download"
                           else f"{result.cpu_us_per_call:6.0f} us/call")  # fmt: skip
                    log(f"round {number + 1} {phase:11} {target.name:12} {result.rate:7.0f} /s "
                        f"{result.mib_s:7.1f} MiB/s  cpu {cpu} "
                        f"({result.system_cpu_s / max(result.cpu_s, 1e-9):.0%} kernel) "
                        f"load {result.loadavg:.2f}")  # fmt: skip
        return summarize(rounds, [t for t, _ in targets], args)
    finally:
        await h2c.stop()
        await tls.stop()


async def start_aperture(stack: Stack, binary: Path, service: ApertureService) -> ApertureProcess:
    """The real Aperture selling the gRPC route (its access lines at info, like ours)."""
    assert stack.descriptor is not None
    aperture = ApertureProcess(binary, stack.descriptor.seller, [service], log_level="info")
    stack.apertures.append(aperture)
    aperture.spawn()  # from the main thread: it dies with us (PR_SET_PDEATHSIG)
    try:
        await asyncio.to_thread(aperture.wait_ready)
    except (RuntimeError, TimeoutError) as exc:
        raise BenchFailure(str(exc)) from None
    return aperture


def summarize(
    rounds: list[Phase], targets: list[Target], args: argparse.Namespace
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for phase in args.phases:
        entry: dict[str, Any] = {}
        for target in targets:
            mine = [r for r in rounds if r.phase == phase and r.target == target.name]
            if not mine:
                continue
            key = _speed(phase)
            ordered = sorted(mine, key=key)
            median = ordered[len(ordered) // 2]
            entry[target.name] = {
                "label": target.label,
                "rate": median.rate, "mib_s": median.mib_s,
                "cpu_us_per_call": median.cpu_us_per_call, "cpu_ms_per_mib": median.cpu_ms_per_mib,
                "kernel_share": median.system_cpu_s / median.cpu_s if median.cpu_s else 0.0,
                "range": [key(ordered[0]), key(ordered[-1])],
                "cpu_range": sorted(
                    r.cpu_ms_per_mib if phase == "download" else r.cpu_us_per_call for r in mine
                )[:: max(1, len(mine) - 1)],
                "loadavg": [r.loadavg for r in mine],
            }  # fmt: skip
        if "aperture" in entry:
            ap = entry["aperture"]
            for name, figures in entry.items():
                if name == "aperture":
                    continue
                if phase == "download":
                    figures["x_aperture"] = figures["mib_s"] / ap["mib_s"]
                    figures["cpu_x_aperture"] = figures["cpu_ms_per_mib"] / ap["cpu_ms_per_mib"]
                    per_round = _paired(rounds, phase, name, _speed(phase))
                else:
                    figures["x_aperture"] = figures["rate"] / ap["rate"]
                    figures["cpu_x_aperture"] = figures["cpu_us_per_call"] / ap["cpu_us_per_call"]
                    per_round = _paired(rounds, phase, name, _speed(phase))
                figures["x_aperture_range"] = [min(per_round), max(per_round)] if per_round else []
        summary[phase] = entry
    return {"summary": summary, "rounds": [asdict(r) | {"rate": r.rate, "mib_s": r.mib_s}
                                           for r in rounds]}  # fmt: skip


def _speed(phase: str) -> Callable[[Phase], float]:
    def speed(result: Phase) -> float:
        return result.mib_s if phase == "download" else result.rate

    return speed


def _paired(
    rounds: list[Phase], phase: str, name: str, key: Callable[[Phase], float]
) -> list[float]:
    """ours/Aperture within each round (measured minutes apart, not hours)."""
    mine = [r for r in rounds if r.phase == phase and r.target == name]
    theirs = [r for r in rounds if r.phase == phase and r.target == "aperture"]
    return [key(a) / key(b) for a, b in zip(mine, theirs, strict=False) if key(b)]


def table(result: dict[str, Any], args: argparse.Namespace, env: dict[str, Any]) -> str:
    lines = [
        f"gRPC through the gateway (paid, L402 checked, access line), 127.0.0.1, "
        f"median of {args.rounds} rounds, commit {env.get('commit') or '?'}",
        f"load average at start {env['loadavg_at_start'][0]:.2f}, at end "
        f"{env.get('loadavg_at_end', [0])[0]:.2f} ({os.cpu_count()} CPUs shared)",
    ]
    for phase, entry in result["summary"].items():
        unit = "MiB/s" if phase == "download" else "calls/s"
        cpu_unit = "ms/MiB" if phase == "download" else "us/call"
        what = {"unary": f"unary {args.payload} B, c{args.concurrency}, 1 connection",
                "unary_conns": f"unary {args.payload} B, c{args.concurrency}, "
                f"{args.connections} connections",
                "download": f"download, one stream of {args.stream_mib} MiB"}[phase]  # fmt: skip
        lines += ["", f"{what}:"]
        for f in entry.values():
            speed = f["mib_s"] if phase == "download" else f["rate"]
            cpu = f["cpu_ms_per_mib"] if phase == "download" else f["cpu_us_per_call"]
            low, high = f["range"]
            text = (f"  {f['label']:34} {speed:8.1f} {unit} ({low:.0f}-{high:.0f})"
                    f"  CPU {cpu:7.2f} {cpu_unit} ({f['kernel_share']:.0%} kernel)"
                    f"  load {min(f['loadavg']):.1f}-"
                    f"{max(f['loadavg']):.1f}")  # fmt: skip
            if "x_aperture" in f:
                rng = f["x_aperture_range"]
                text += (f"  x{f['x_aperture']:.2f} of Aperture ({rng[0]:.2f}-{rng[1]:.2f}), "
                         f"CPU x{f['cpu_x_aperture']:.2f}")  # fmt: skip
            lines.append(text)
    w1 = result["summary"].get("unary_conns", {}).get("ours_h2c")
    w2 = result["summary"].get("unary_conns", {}).get("ours_h2c_w2")
    if w1 and w2:
        lines += [
            "",
            f"2 workers vs 1 ({args.connections} connections): calls/s "
            f"x{w2['rate'] / w1['rate']:.2f}, CPU per call "
            f"x{w2['cpu_us_per_call'] / w1['cpu_us_per_call']:.2f}",
        ]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per unary phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--payload", type=int, default=100, help="unary bytes each way")
    parser.add_argument("--stream-mib", type=int, default=256, help="MiB per download")
    parser.add_argument("--phases", type=lambda t: t.split(","),
                        default=["unary", "unary_conns", "download"])  # fmt: skip
    parser.add_argument("--connections", type=int, default=4, help="for the unary_conns phase")
    parser.add_argument("--targets", type=lambda t: t.split(","),
                        default=["ours_h2c", "ours_tls", "ours_h2c_w2", "aperture"])  # fmt: skip
    parser.add_argument("--no-aperture", action="store_true")
    parser.add_argument("--py-spy", help="directory for py-spy samples of our gateways (raw)")
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    binary = None
    if not args.no_aperture:
        binary, skipped = aperture_binary()
        if binary is None:
            if aperture_required():
                log(f"Aperture is required (CI or L402_REQUIRE_APERTURE=1): {skipped}")
                return 1
            log(f"Aperture unavailable, measuring our side only: {skipped}")
    workdir = Path(tempfile.mkdtemp(prefix="l402-grpc-bench-"))
    stack = Stack(workdir=workdir)
    env = environment()
    ok = False
    try:
        stack.network = RegtestNetwork()
        stack.descriptor = stack.network.start()
        result = asyncio.run(measure(stack, args, binary))
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
    text = table(result, args, env)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps({"environment": env, "settings": vars(args), **result}, indent=2))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
