#!/usr/bin/env python3
"""Loopback benchmark of the L402 gateway on a real regtest Lightning network.

One run measures, on 127.0.0.1 only:

1. direct:   paid-request-equivalent GETs straight to the demo upstream;
2. gateway:  the same GETs through the gateway with one valid L402 credential
             (paid once on regtest up front, then served from the verified cache);
3. uncached: the same GETs through a second gateway with `verified_cache_size: 0`
             (every request does the store lookup and the macaroon HMAC chain);
4. challenge: unauthenticated GETs, each answered 402 with a fresh LND invoice
             (`challenge_rate_limit` is turned off in the bench's gateways: all
             of these come from one client and would otherwise get 429).

Process layout: the upstream and each gateway run as their own processes via the
real `l402-gateway` CLI (`signal-upstream`, `serve`); this process drives the load
with a minimal keep-alive HTTP/1.1 client on raw asyncio streams and owns the
regtest network (btcd + two LND nodes). See bench/README.md for what the figures
mean on a small machine. Every loop is bounded in count and time; any request
without the expected status fails the run (exit 1) after everything is stopped.

Usage: .venv/bin/python bench/gateway_bench.py [--json] [--rounds 3] [--duration 5] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.lightning import LndClient
from gateway.regtest.network import Descriptor, RegtestNetwork
from gateway.regtest.processes import ManagedProcess, free_port

HOST = "127.0.0.1"
PATH = "/ep212/premium-signal"
REPO_ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT = 30.0  # seconds; one request slower than this is a failure
STARTUP_TIMEOUT = 30.0


class BenchFailure(Exception):
    """A request got an unexpected answer, or a component did not come up."""


# -- minimal HTTP/1.1 keep-alive client ---------------------------------------------


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Connection:
    """One keep-alive connection; requests on it are strictly sequential.

    Deliberately tiny (no TLS, no redirects, no pooling) so that the load
    generator spends as little CPU per request as Python allows and the
    figures describe the servers rather than the client.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        return self._reader, self._writer

    async def request(self, raw: bytes) -> Reply:
        reader, writer = await self._open()
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"content-length" in headers:
                body = await reader.readexactly(int(headers[b"content-length"]))
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await _read_chunked(reader)
            else:
                body = await reader.read()
                headers[b"connection"] = b"close"
        except BaseException:
            await self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Reply(status, headers, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


def build_request(port: int, authorization: str | None) -> bytes:
    lines = [f"GET {PATH} HTTP/1.1", f"Host: {HOST}:{port}", "Accept: application/json"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- CPU accounting from /proc --------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, summed over all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


# -- load phases ----------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    target: str
    concurrency: int
    requests: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    expected_status: int
    cpu_percent: dict[str, float] = field(default_factory=dict)
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    machine_busy_percent: float = 0.0  # all cores together: 200 = both cores busy
    others_cpu_percent: float = 0.0  # machine busy minus the processes listed in cpu_percent


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


Check = Callable[[Reply], str | None]


def expect_status(status: int, *, header: bytes | None = None) -> Check:
    def check(reply: Reply) -> str | None:
        if reply.status != status:
            return f"status {reply.status} (expected {status}): {reply.body[:200]!r}"
        if header is not None and header not in reply.headers:
            return f"status {reply.status} without a {header.decode()} header"
        return None

    return check


async def run_load(
    *,
    name: str,
    target: str,
    port: int,
    raw: bytes,
    expected: int,
    check: Check,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    pids: dict[str, int],
    warmup_seconds: float = 0.0,
) -> PhaseResult:
    """Closed loop: `concurrency` connections, each sending its next request when the
    previous answer is complete, until `max_requests` were sent or `max_seconds` passed."""
    if warmup_seconds > 0:
        await _drive(port, raw, check, concurrency, 10**9, warmup_seconds, name + " warm-up")
    cpu0 = {who: cpu_seconds(pid) for who, pid in pids.items()}
    busy0, _ = machine_cpu()
    t0 = time.perf_counter()
    latencies = await _drive(port, raw, check, concurrency, max_requests, max_seconds, name)
    elapsed = time.perf_counter() - t0
    busy1, _ = machine_cpu()
    cpu = {who: cpu_seconds(pid) - cpu0[who] for who, pid in pids.items()}
    busy = busy1 - busy0
    latencies.sort()
    n = len(latencies)
    return PhaseResult(
        name=name,
        target=target,
        concurrency=concurrency,
        requests=n,
        seconds=round(elapsed, 3),
        throughput_rps=round(n / elapsed, 1),
        p50_ms=_ms(percentile(latencies, 50)),
        p90_ms=_ms(percentile(latencies, 90)),
        p99_ms=_ms(percentile(latencies, 99)),
        max_ms=_ms(latencies[-1]),
        mean_ms=_ms(sum(latencies) / n),
        expected_status=expected,
        cpu_percent={who: round(100 * s / elapsed, 1) for who, s in cpu.items()},
        cpu_us_per_request={who: round(1e6 * s / n, 1) for who, s in cpu.items()},
        machine_busy_percent=round(100 * busy / elapsed, 1),
        others_cpu_percent=round(100 * max(busy - sum(cpu.values()), 0.0) / elapsed, 1),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def _drive(
    port: int,
    raw: bytes,
    check: Check,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    label: str,
) -> list[float]:
    latencies: list[float] = []
    failures: list[str] = []
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal issued
        conn = Connection(port)
        try:
            while not failures and issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        reply = await conn.request(raw)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(time.perf_counter() - start)
                problem = check(reply)
                if problem is not None:
                    failures.append(problem)
                    return
        finally:
            await conn.close()

    # The outer bound covers a stuck connect as well as slow requests.
    async with asyncio.timeout(max_seconds + REQUEST_TIMEOUT + 10):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if failures:
        raise BenchFailure(f"{label}: {len(failures)} failed request(s); first: {failures[0]}")
    if not latencies:
        raise BenchFailure(f"{label}: no request completed")
    return latencies


# -- components -----------------------------------------------------------------------


@dataclass
class Stack:
    """Everything the run started, so `finally` can stop all of it."""

    workdir: Path
    gateway_log_level: str = "info"
    network: RegtestNetwork | None = None
    descriptor: Descriptor | None = None
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout=15)
        self.processes.clear()
        if self.network is not None:
            self.network.stop()
            self.network = None


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


async def wait_http_ok(proc: ManagedProcess, url: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise BenchFailure(f"{proc.name} exited early:\n{proc.log_tail()}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
                    last = f"{resp.status} {await resp.text()}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.2)
    raise BenchFailure(f"{proc.name} not ready at {url} within {timeout:.0f}s ({last})")


async def start_upstream(stack: Stack) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess(
        "upstream",
        cli_argv("signal-upstream", "--host", HOST, "--port", str(port)),
        stack.workdir / "upstream.log",
        detached=False,
    )
    stack.processes.append(proc)
    await wait_http_ok(proc, f"http://{HOST}:{port}/healthz")
    return proc, port


async def start_gateway(
    stack: Stack, name: str, upstream_port: int, *, cache_size: int
) -> tuple[ManagedProcess, int]:
    assert stack.descriptor is not None
    seller = stack.descriptor.seller
    public, admin = free_port(), free_port()
    config = stack.workdir / f"{name}.yaml"
    config.write_text(
        f"""\
listen: {{public: "{HOST}:{public}", admin: "{HOST}:{admin}"}}
lnd: {{host: "{seller.rpc}", tls_cert: "{seller.tls_cert}", macaroon: "{seller.invoice_macaroon}"}}
store: {{url: "sqlite:///{stack.workdir}/tokens.db"}}
verified_cache_size: {cache_size}
# The challenge phases mint hundreds of invoices from one client (127.0.0.1):
# the per-client challenge rate limit is off so they measure minting, not 429s.
challenge_rate_limit: {{per_minute: 0}}
routes:
  - name: premium
    path: '^{PATH}$'
    upstream: "http://{HOST}:{upstream_port}"
    price_sats: 10
"""
    )
    proc = ManagedProcess(
        name,
        cli_argv("serve", "--config", str(config), "--log-level", stack.gateway_log_level),
        stack.workdir / f"{name}.log",
        detached=False,
    )
    stack.processes.append(proc)
    await wait_http_ok(proc, f"http://{HOST}:{admin}/readyz")
    return proc, public


async def stop_process(stack: Stack, proc: ManagedProcess) -> None:
    await asyncio.to_thread(proc.stop, 15)
    stack.processes.remove(proc)


async def buy_credential(stack: Stack, gateway_port: int) -> tuple[str, float, float]:
    """One real L402 purchase: challenge, pay on regtest, build the Authorization value.

    Returns (authorization, challenge seconds, payment seconds)."""
    assert stack.descriptor is not None
    buyer = stack.descriptor.buyer
    conn = Connection(gateway_port)
    try:
        t0 = time.perf_counter()
        reply = await conn.request(build_request(gateway_port, None))
        challenge_s = time.perf_counter() - t0
    finally:
        await conn.close()
    if reply.status != 402:
        raise BenchFailure(f"expected a 402 challenge, got {reply.status}: {reply.body[:200]!r}")
    body = json.loads(reply.body)
    lnd = LndClient.connect(
        buyer.rpc, tls_cert=Path(buyer.tls_cert), macaroon=Path(buyer.admin_macaroon)
    )
    try:
        t0 = time.perf_counter()
        payment = await lnd.pay_invoice(body["invoice"], fee_limit_msat=1000, timeout_seconds=60)
        pay_s = time.perf_counter() - t0
    finally:
        await lnd.close()
    return f"L402 {body['macaroon']}:{payment.preimage.hex()}", challenge_s, pay_s


async def check_paid_body(port: int, raw: bytes, label: str) -> None:
    """The load phases only check status codes; look at one body properly."""
    conn = Connection(port)
    try:
        reply = await conn.request(raw)
    finally:
        await conn.close()
    if reply.status != 200:
        raise BenchFailure(f"{label}: status {reply.status}: {reply.body[:200]!r}")
    payload = json.loads(reply.body)
    if payload.get("ok") is not True or payload.get("authorizationHeaders") != 1:
        raise BenchFailure(f"{label}: unexpected body {payload!r}")


# -- the run --------------------------------------------------------------------------


@dataclass
class Settings:
    duration: float
    concurrency: int
    max_requests: int
    warmup: float
    sequential: int
    challenge_sequential: int
    challenge_count: int
    challenge_concurrency: int
    challenge_seconds: float
    rounds: int
    quiet_wait: float


async def wait_for_quiet(max_wait: float, threshold: float = 30.0) -> float:
    """Wait (bounded) until the machine is nearly idle; returns the last busy % seen."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, total0 = machine_cpu()
        await asyncio.sleep(1.0)
        busy1, total1 = machine_cpu()
        busy = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9) * (os.cpu_count() or 1)
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 1)
        log(f"machine busy ({busy:.0f}% of one core) before the load phases; waiting")


def pick_median(rounds: list[PhaseResult]) -> dict[str, Any]:
    """The round with the median throughput (its own latencies), plus the spread."""
    ordered = sorted(rounds, key=lambda r: r.throughput_rps)
    chosen = asdict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = len(rounds)
    chosen["throughput_rps_min"] = ordered[0].throughput_rps
    chosen["throughput_rps_max"] = ordered[-1].throughput_rps
    chosen["p50_ms_rounds"] = [r.p50_ms for r in rounds]
    return chosen


async def measure(stack: Stack, s: Settings) -> dict[str, Any]:
    assert stack.descriptor is not None
    lnd_seller_pid = stack.descriptor.seller.pid
    # All children are started before this process opens its first gRPC channel.
    upstream, upstream_port = await start_upstream(stack)
    gateway, gateway_port = await start_gateway(stack, "gateway", upstream_port, cache_size=10000)
    nocache, nocache_port = await start_gateway(
        stack, "gateway-nocache", upstream_port, cache_size=0
    )
    me = os.getpid()
    log(
        f"upstream pid {upstream.pid} :{upstream_port}; gateway pid {gateway.pid} "
        f":{gateway_port}; cache-off gateway pid {nocache.pid} :{nocache_port}"
    )

    auth, challenge_s, pay_s = await buy_credential(stack, gateway_port)
    log(f"bought a credential: challenge {challenge_s * 1000:.1f} ms, payment {pay_s:.2f} s")
    targets = [
        ("direct", "upstream", upstream_port, upstream.pid),
        ("gateway", "gateway (cached)", gateway_port, gateway.pid),
        ("uncached", "gateway (cache off)", nocache_port, nocache.pid),
    ]
    requests = {name: build_request(port, auth) for name, _, port, _ in targets}
    for name, _, port, _ in targets:
        await check_paid_body(port, requests[name], name)
    ok = expect_status(200)
    # Our own mostly idle processes, so that "others" means only what this run did not start
    # (plus kernel work such as LND's database writes, which no process is charged for).
    background = {
        "lnd_seller": lnd_seller_pid,
        "lnd_buyer": stack.descriptor.buyer.pid,
        "btcd": stack.descriptor.btcd_pid,
        "idle_gateway": 0,
        "idle_gateway2": 0,
    }
    busy_before = await wait_for_quiet(s.quiet_wait)

    def report(result: PhaseResult) -> PhaseResult:
        log(
            f"{result.name}: {result.requests} req in {result.seconds:.1f}s, "
            f"{result.throughput_rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, others {result.others_cpu_percent:.0f}% CPU"
        )
        return result

    # Interleaved rounds: a burst of outside load hits every target alike, and the
    # median round of each target is reported.
    rounds: dict[str, list[PhaseResult]] = {}
    for i in range(s.rounds):
        for conc, count, suffix in ((s.concurrency, s.max_requests, ""), (1, s.sequential, "_c1")):
            for name, target, port, pid in targets:
                idle = [p for p in (gateway.pid, nocache.pid) if p != pid] + [0]
                pids = background | {"idle_gateway": idle[0], "idle_gateway2": idle[1]}
                pids |= {"client": me, "gateway": pid, "upstream": upstream.pid}
                if name == "direct":
                    pids["gateway"] = 0  # no gateway on this path; shown as 0
                result = await run_load(
                    name=name + suffix,
                    target=target,
                    port=port,
                    raw=requests[name],
                    expected=200,
                    check=ok,
                    concurrency=conc,
                    max_requests=count,
                    max_seconds=s.duration,
                    pids=pids,
                    warmup_seconds=s.warmup if i == 0 else 0.0,
                )
                rounds.setdefault(name + suffix, []).append(report(result))
    phases = {name: pick_median(results) for name, results in rounds.items()}

    # Challenges: every request mints a real invoice on the seller's LND.
    challenge_pids = background | {
        "client": me,
        "gateway": gateway.pid,
        "upstream": upstream.pid,
        "idle_gateway": nocache.pid,
    }
    challenge_check = expect_status(402, header=b"www-authenticate")
    bare = build_request(gateway_port, None)
    for conc, count in ((1, s.challenge_sequential), (s.challenge_concurrency, s.challenge_count)):
        result = await run_load(
            name=f"challenge_c{conc}",
            target="gateway 402 + LND AddInvoice",
            port=gateway_port,
            raw=bare,
            expected=402,
            check=challenge_check,
            concurrency=conc,
            max_requests=count,
            max_seconds=s.challenge_seconds,
            pids=challenge_pids,
        )
        phases[result.name] = asdict(report(result)) | {"rounds": 1}

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3) if b else float("nan")

    direct, cached, uncached = phases["direct"], phases["gateway"], phases["uncached"]
    ch_seq = phases["challenge_c1"]
    ch_conc = phases[f"challenge_c{s.challenge_concurrency}"]
    summary: dict[str, Any] = {
        "gateway_over_direct": {
            "throughput": ratio(cached["throughput_rps"], direct["throughput_rps"]),
            "p50_latency": ratio(cached["p50_ms"], direct["p50_ms"]),
            "p99_latency": ratio(cached["p99_ms"], direct["p99_ms"]),
        },
        "added_latency_c1_p50_ms": round(
            phases["gateway_c1"]["p50_ms"] - phases["direct_c1"]["p50_ms"], 3
        ),
        "gateway_cpu_us_per_request": cached["cpu_us_per_request"]["gateway"],
        "uncached_over_cached": {
            "throughput": ratio(uncached["throughput_rps"], cached["throughput_rps"]),
            "p50_latency": ratio(uncached["p50_ms"], cached["p50_ms"]),
        },
        "uncached_verify_extra_c1_p50_ms": round(
            phases["uncached_c1"]["p50_ms"] - phases["gateway_c1"]["p50_ms"], 3
        ),
        "uncached_verify_extra_gateway_cpu_us": round(
            uncached["cpu_us_per_request"]["gateway"] - cached["cpu_us_per_request"]["gateway"], 1
        ),
        "challenge": {
            "c1_p50_ms": ch_seq["p50_ms"],
            "c1_p99_ms": ch_seq["p99_ms"],
            f"c{s.challenge_concurrency}_throughput_rps": ch_conc["throughput_rps"],
            f"c{s.challenge_concurrency}_p50_ms": ch_conc["p50_ms"],
            f"c{s.challenge_concurrency}_p99_ms": ch_conc["p99_ms"],
        },
        "credential_purchase": {
            "first_challenge_ms": _ms(challenge_s),
            "payment_s": round(pay_s, 3),
        },
        "machine_busy_percent_before_load": busy_before,
        "max_others_cpu_percent": max(p["others_cpu_percent"] for p in phases.values()),
        "all_rounds": {name: [asdict(r) for r in results] for name, results in rounds.items()},
    }
    return {"phases": list(phases.values()), "summary": summary}


def environment() -> dict[str, Any]:
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "commit": commit,
    }


# -- output ---------------------------------------------------------------------------


def render_table(report: dict[str, Any]) -> str:
    out: list[str] = []
    env = report["environment"]
    out.append(
        f"L402 gateway loopback benchmark  {env['time_utc']}  commit {env['commit'] or '?'}  "
        f"{env['cpus']} CPUs  Python {env['python']}  aiohttp {env['aiohttp']}"
    )
    load = env.get("loadavg_at_start", [0.0])[0], env.get("loadavg_at_end", [0.0])[0]
    out.append(f"1-min load average: {load[0]:.2f} at start, {load[1]:.2f} at end")
    out.append("")
    head = (
        f"{'phase':<13} {'target':<28} {'conc':>4} {'reqs':>6} {'req/s':>8} "
        f"{'(rounds min-max)':>17} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  "
        "cpu% client/gw/up/lnd/others"
    )
    out.append(head)
    out.append("-" * len(head))
    for p in report["phases"]:
        cpu = p["cpu_percent"]
        cpu_text = "/".join(
            f"{v:.0f}"
            for v in (
                cpu["client"],
                cpu["gateway"],
                cpu["upstream"],
                cpu["lnd_seller"],
                p["others_cpu_percent"],
            )
        )
        spread = (
            f"{p['throughput_rps_min']:.0f}-{p['throughput_rps_max']:.0f}"
            if p["rounds"] > 1
            else "-"
        )
        out.append(
            f"{p['name']:<13} {p['target']:<28} {p['concurrency']:>4} {p['requests']:>6} "
            f"{p['throughput_rps']:>8.1f} {spread:>17} {p['p50_ms']:>7.2f} "
            f"{p['p99_ms']:>7.2f} {p['max_ms']:>7.2f}  {cpu_text}"
        )
    s = report["summary"]
    g = s["gateway_over_direct"]
    out.append("")
    out.append(
        f"gateway/direct (cached credential): throughput x{g['throughput']}, "
        f"p50 x{g['p50_latency']}, p99 x{g['p99_latency']}; "
        f"added p50 latency at concurrency 1: {s['added_latency_c1_p50_ms']:.3f} ms; "
        f"gateway CPU {s['gateway_cpu_us_per_request']:.0f} us/request"
    )
    u = s["uncached_over_cached"]
    out.append(
        f"verification cache off/on: throughput x{u['throughput']}, "
        f"p50 x{u['p50_latency']}; uncached verification adds "
        f"{s['uncached_verify_extra_c1_p50_ms']:.3f} ms p50 at concurrency 1 and "
        f"{s['uncached_verify_extra_gateway_cpu_us']:.0f} us gateway CPU per request"
    )
    ch = s["challenge"]
    extra = ", ".join(f"{k} {v}" for k, v in ch.items() if not k.startswith("c1_"))
    out.append(
        f"challenge (402 + LND invoice): sequential p50 {ch['c1_p50_ms']:.2f} ms, "
        f"p99 {ch['c1_p99_ms']:.2f} ms; {extra}"
    )
    cp = s["credential_purchase"]
    out.append(
        f"setup: first challenge {cp['first_challenge_ms']:.1f} ms, "
        f"regtest payment {cp['payment_s']:.2f} s"
    )
    if s["max_others_cpu_percent"] > 25:
        out.append(
            f"WARNING: processes outside this benchmark used up to "
            f"{s['max_others_cpu_percent']:.0f}% CPU during a reported phase (100 = one core); "
            "figures are contended"
        )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    p.add_argument(
        "--duration", type=float, default=5.0, help="seconds per load phase per round (5)"
    )
    p.add_argument("--concurrency", type=int, default=32, help="connections under load (32)")
    p.add_argument(
        "--max-requests", type=int, default=200_000, help="request cap per load phase (200000)"
    )
    p.add_argument("--warmup", type=float, default=1.0, help="discarded warm-up seconds (1)")
    p.add_argument(
        "--sequential", type=int, default=1000, help="requests in each concurrency-1 phase (1000)"
    )
    p.add_argument(
        "--challenge-sequential", type=int, default=200, help="sequential challenges (200)"
    )
    p.add_argument(
        "--challenge-count", type=int, default=400, help="challenges at --challenge-concurrency"
    )
    p.add_argument("--challenge-concurrency", type=int, default=8, help="(8)")
    p.add_argument(
        "--challenge-seconds", type=float, default=60.0, help="time cap per challenge phase (60)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per load phase (3)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="wait up to this many seconds for an idle machine before the load phases (30)",
    )
    p.add_argument(
        "--gateway-log-level",
        default="info",
        help="the gateways' --log-level (info, the default, logs one JSON line per request)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    for name in (
        "duration",
        "concurrency",
        "max_requests",
        "sequential",
        "challenge_count",
        "rounds",
    ):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # gRPC core logs an INFO line whenever this process forks a child while a channel
    # thread exists; it is harmless here (the children exec at once).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    settings = Settings(
        duration=args.duration,
        concurrency=args.concurrency,
        max_requests=args.max_requests,
        warmup=args.warmup,
        sequential=args.sequential,
        challenge_sequential=args.challenge_sequential,
        challenge_count=args.challenge_count,
        challenge_concurrency=args.challenge_concurrency,
        challenge_seconds=args.challenge_seconds,
        rounds=args.rounds,
        quiet_wait=args.quiet_wait,
    )
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
        measured = asyncio.run(measure(stack, settings))
        env["loadavg_at_end"] = list(os.getloadavg())
        ok = True
    except BenchFailure as exc:
        log(f"FAILED: {exc}")
        for proc in stack.processes:
            log(f"--- {proc.name} log tail ---\n{proc.log_tail()}")
        return 1
    finally:
        stack.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
    settings_out = asdict(settings) | {"gateway_log_level": args.gateway_log_level}
    report = {"environment": env, "settings": settings_out, **measured}
    table = render_table(report)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(report, indent=2))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
