#!/usr/bin/env python3
"""Loopback benchmark of the HTTP/2 engine (gateway.h2engine): gRPC through the engine vs direct.

One run measures, on 127.0.0.1 only, with grpcio on both ends:

1. unary:    small unary calls (`--payload` bytes each way) at `--concurrency`
             for `--duration` seconds, direct to the upstream and through the engine;
2. download: one server-streaming call of `--stream-mib` MiB (1 MiB messages);
3. upload:   one client-streaming call of `--stream-mib` MiB.

Each phase runs `--rounds` times, interleaved direct/engine; the table shows the
median round (by throughput) and the JSON every round. The upstream and the
engine run in their own processes (this script re-invoked with `--role`), so
their CPU time is read from /proc/<pid>/stat: engine CPU per unary call and
per streamed MiB are the figures that do not depend on the machine's other
load. `--profile FILE` runs the engine under cProfile and writes its stats.

Usage: .venv/bin/python bench/h2engine_bench.py [--json] [--rounds 3] [--duration 5] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from gateway.h2engine import (  # noqa: E402 (after the path set-up, for running as a script)
    FailReason,
    Forward,
    H2Proxy,
    H2Site,
    H2Target,
    StreamHead,
    StreamOutcome,
)

HOST = "127.0.0.1"
SERVICE = "bench.Echo"
MESSAGE = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
CALL_TIMEOUT = 30.0
STARTUP_TIMEOUT = 30.0


class BenchFailure(Exception):
    """A call failed or a process did not come up."""


# ---- roles: the upstream and the engine, each in its own process ----


def chunk(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (MESSAGE // 32)


async def run_upstream() -> None:
    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def download(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        message = chunk(0)
        for _ in range(int(request)):
            yield message

    async def upload(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        total = 0
        async for message in requests:
            total += len(message)
        return str(total).encode()

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Download": grpc.unary_stream_rpc_method_handler(download),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
        },
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)


class _Ticket:
    """The engine's bookkeeping hooks, as cheap as a real server's could be."""

    async def answered(self, status: int, grpc_status: int | None) -> None:
        return None

    async def failed(self, reason: FailReason) -> None:
        return None

    def finished(self, outcome: StreamOutcome) -> None:
        return None


class _ForwardAll:
    def __init__(self, port: int) -> None:
        self.target = H2Target(HOST, port, None, f"{HOST}:{port}", 5.0)

    async def decide(self, head: StreamHead) -> Forward:
        return Forward(self.target, head.path, head.headers, _Ticket())


async def run_engine(upstream_port: int, profile: str | None) -> None:
    from aiohttp import web

    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    proxy = H2Proxy(_ForwardAll(upstream_port))
    site = H2Site(runner, proxy, HOST, 0)
    await site.start()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    print(f"PORT {site.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    await runner.cleanup()
    await proxy.close()


# ---- the driver ----


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    port: int

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                async with asyncio.timeout(STARTUP_TIMEOUT):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def spawn(name: str, *args: str) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--role", *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            line = await process.stdout.readline()
    except TimeoutError:
        process.kill()
        raise BenchFailure(f"{name} did not start") from None
    if not line.startswith(b"PORT "):
        raise BenchFailure(f"{name} did not start: {line!r}")
    return Child(name, process, int(line.split()[1]))


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Phase:
    name: str
    target: str  # direct | engine
    calls: int
    seconds: float
    bytes: int
    p50_ms: float | None
    p99_ms: float | None
    cpu_engine_s: float
    cpu_upstream_s: float
    cpu_client_s: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / self.seconds / MESSAGE if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def unary_load(
    channel: grpc.aio.Channel, args: argparse.Namespace
) -> tuple[int, float, list[float]]:
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    payload = b"x" * args.payload
    latencies: list[float] = []
    stop_at = time.perf_counter() + args.duration
    budget = args.max_calls

    async def worker() -> None:
        nonlocal budget
        while time.perf_counter() < stop_at and budget > 0:
            budget -= 1
            started = time.perf_counter()
            reply = await call(payload, timeout=CALL_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            if reply != payload:
                raise BenchFailure("unary reply differs from the request")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return len(latencies), time.perf_counter() - started, latencies


async def download(channel: grpc.aio.Channel, mib: int) -> tuple[int, float]:
    call = channel.unary_stream(f"/{SERVICE}/Download")
    started = time.perf_counter()
    total = 0
    async for message in call(str(mib).encode(), timeout=CALL_TIMEOUT * 4):
        total += len(message)
    if total != mib * MESSAGE:
        raise BenchFailure(f"download got {total} bytes")
    return total, time.perf_counter() - started


async def upload(channel: grpc.aio.Channel, mib: int) -> tuple[int, float]:
    call = channel.stream_unary(f"/{SERVICE}/Upload")
    message = chunk(1)

    def messages() -> Iterator[bytes]:
        for _ in range(mib):
            yield message

    started = time.perf_counter()
    reply = await call(messages(), timeout=CALL_TIMEOUT * 4)
    if int(reply) != mib * MESSAGE:
        raise BenchFailure(f"upload delivered {reply!r}")
    return mib * MESSAGE, time.perf_counter() - started


async def measure(
    name: str, target: str, channel: grpc.aio.Channel, engine: Child, upstream: Child,
    args: argparse.Namespace,
) -> Phase:  # fmt: skip
    cpu = engine.cpu_seconds(), upstream.cpu_seconds(), self_cpu()
    p50 = p99 = None
    if name == "unary":
        calls, seconds, latencies = await unary_load(channel, args)
        size = calls * args.payload * 2
        p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
    elif name == "download":
        size, seconds = await download(channel, args.stream_mib)
        calls = 1
    else:
        size, seconds = await upload(channel, args.stream_mib)
        calls = 1
    return Phase(
        name, target, calls, seconds, size, p50, p99,
        engine.cpu_seconds() - cpu[0], upstream.cpu_seconds() - cpu[1], self_cpu() - cpu[2],
    )  # fmt: skip


def median_round(phases: list[Phase]) -> Phase:
    key = (lambda p: p.rate) if phases[0].name == "unary" else (lambda p: p.mib_s)
    return sorted(phases, key=key)[len(phases) // 2]


def summarize(rounds: list[Phase], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in args.phases:
        picked = {}
        for target in ("direct", "engine"):
            phases = [p for p in rounds if p.name == name and p.target == target]
            picked[target] = median_round(phases)
        direct, engine = picked["direct"], picked["engine"]
        entry: dict[str, Any] = {
            "direct": {**asdict(direct), "rate": direct.rate, "mib_s": direct.mib_s},
            "engine": {**asdict(engine), "rate": engine.rate, "mib_s": engine.mib_s},
        }
        if name == "unary":
            entry["ratio_rate"] = engine.rate / direct.rate
            entry["engine_cpu_us_per_call"] = engine.cpu_engine_s / engine.calls * 1e6
            entry["upstream_cpu_us_per_call"] = direct.cpu_upstream_s / direct.calls * 1e6
            entry["client_cpu_us_per_call"] = direct.cpu_client_s / direct.calls * 1e6
            if direct.p50_ms and engine.p50_ms:
                entry["ratio_p50"] = engine.p50_ms / direct.p50_ms
        else:
            entry["ratio_throughput"] = engine.mib_s / direct.mib_s
            entry["engine_cpu_ms_per_mib"] = engine.cpu_engine_s / (engine.bytes / MESSAGE) * 1e3
        summary[name] = entry
    return summary


def table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"gRPC through gateway.h2engine vs direct, 127.0.0.1, median of {args.rounds} rounds",
        f"python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs",
        "",
    ]
    if u := summary.get("unary"):
        lines += _unary_lines(u, args)
    for label in ("download", "upload"):
        if entry := summary.get(label):
            lines += [
                f"{label}, one stream of {args.stream_mib} MiB:",
                f"  direct  {entry['direct']['mib_s']:8.1f} MiB/s",
                f"  engine  {entry['engine']['mib_s']:8.1f} MiB/s   engine/direct "
                f"x{entry['ratio_throughput']:.2f}, engine CPU "
                f"{entry['engine_cpu_ms_per_mib']:.2f} ms/MiB",
            ]
    return "\n".join(lines)


def _unary_lines(u: dict[str, Any], args: argparse.Namespace) -> list[str]:
    return [
        f"unary, {args.payload} B, concurrency {args.concurrency}, {args.duration:g} s:",
        f"  direct  {u['direct']['rate']:8.0f} calls/s   p50 {u['direct']['p50_ms']:.2f} ms"
        f"  p99 {u['direct']['p99_ms']:.2f} ms",
        f"  engine  {u['engine']['rate']:8.0f} calls/s   p50 {u['engine']['p50_ms']:.2f} ms"
        f"  p99 {u['engine']['p99_ms']:.2f} ms",
        f"  engine/direct: throughput x{u['ratio_rate']:.2f}, p50 x{u.get('ratio_p50', 0):.2f}",
        f"  CPU per call: engine {u['engine_cpu_us_per_call']:.0f} us, upstream "
        f"{u['upstream_cpu_us_per_call']:.0f} us, client {u['client_cpu_us_per_call']:.0f} us",
    ]


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    upstream = await spawn("upstream", "upstream")
    engine: Child | None = None
    try:
        engine_args = ["engine", "--upstream-port", str(upstream.port)]
        if args.profile:
            engine_args += ["--profile", args.profile]
        engine = await spawn("engine", *engine_args)
        options = [("grpc.max_receive_message_length", 8 * MESSAGE)]
        async with (
            grpc.aio.insecure_channel(f"{HOST}:{upstream.port}", options=options) as direct,
            grpc.aio.insecure_channel(f"{HOST}:{engine.port}", options=options) as through,
        ):
            channels = {"direct": direct, "engine": through}
            warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
            for channel in channels.values():  # connections, code paths, allocator
                await unary_load(channel, warm)
                await download(channel, 8)
                await upload(channel, 8)
            rounds: list[Phase] = []
            for number in range(args.rounds):
                for name in args.phases:
                    for target, channel in channels.items():
                        phase = await measure(name, target, channel, engine, upstream, args)
                        rounds.append(phase)
                        print(
                            f"round {number + 1} {name:8} {target:6} "
                            f"{phase.rate:8.0f} calls/s {phase.mib_s:8.1f} MiB/s",
                            file=sys.stderr,
                        )
        summary = summarize(rounds, args)
        return {
            "config": vars(args),
            "summary": summary,
            "rounds": [{**asdict(p), "rate": p.rate, "mib_s": p.mib_s} for p in rounds],
        }
    finally:
        if engine is not None:
            await engine.stop()
        await upstream.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per unary phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unary warm-up")
    parser.add_argument("--max-calls", type=int, default=200_000, help="cap per unary phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--payload", type=int, default=100, help="unary bytes each way")
    parser.add_argument("--stream-mib", type=int, default=256, help="MiB per streaming phase")
    parser.add_argument(
        "--phases",
        type=lambda text: text.split(","),
        default=["unary", "download", "upload"],
        help="comma-separated subset of unary,download,upload",
    )
    parser.add_argument("--profile", help="write the engine's cProfile stats to this file")
    parser.add_argument("--role", choices=["upstream", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse()
    if args.role == "upstream":
        asyncio.run(run_upstream())
        return 0
    if args.role == "engine":
        asyncio.run(run_engine(args.upstream_port, args.profile))
        return 0
    try:
        result = asyncio.run(drive(args))
    except BenchFailure as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    text = table(result["summary"], args)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
