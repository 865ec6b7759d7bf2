"""The processes a benchmark run starts, and the one purchase per gateway.

Everything started here is recorded in `Stack` so that `finally` can stop it
by PID: the regtest network (btcd + seller/buyer LND), our demo upstream and
gateways (`l402-gateway` CLI processes), and the real Aperture (through the
test harness in tests/support/aperture.py, selling the same route).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from bench.phase import BenchFailure, Load
from bench.pyload import fetch_once
from gateway.buyer import parse_challenge
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor, RegtestNetwork
from gateway.regtest.processes import ManagedProcess, free_port
from tests.support.aperture import (
    ApertureProcess,
    ApertureService,
    ApertureUnavailable,
    find_aperture,
)

HOST = "127.0.0.1"
PATH = "/ep212/premium-signal"
PRICE_SATS = 10
STARTUP_TIMEOUT = 30.0
MINIMAL_PROXY = Path(__file__).resolve().parent / "minimal_proxy.py"


@dataclass
class Stack:
    """Everything the run started, so `finally` can stop all of it."""

    workdir: Path
    gateway_log_level: str = "info"
    network: RegtestNetwork | None = None
    descriptor: Descriptor | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    apertures: list[ApertureProcess] = field(default_factory=list)

    def stop(self) -> None:
        for aperture in self.apertures:
            aperture.remove()
        self.apertures.clear()
        for proc in reversed(self.processes):
            proc.stop(timeout=15)
        self.processes.clear()
        if self.network is not None:
            self.network.stop()
            self.network = None

    def log_tails(self) -> list[tuple[str, str]]:
        tails = [(p.name, p.log_tail()) for p in self.processes]
        return tails + [(a.name, a.log_tail()) for a in self.apertures]


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


def gateway_config(
    stack: Stack, name: str, upstream_port: int, *, cache_size: int, store: Path | None = None
) -> tuple[Path, int, int]:
    """Write one gateway's routes.yaml; (path, public port, admin port)."""
    assert stack.descriptor is not None
    seller = stack.descriptor.seller
    public, admin = free_port(), free_port()
    config = stack.workdir / f"{name}.yaml"
    store = store or stack.workdir / "tokens.db"
    config.write_text(
        f"""\
listen: {{public: "{HOST}:{public}", admin: "{HOST}:{admin}"}}
lnd: {{host: "{seller.rpc}", tls_cert: "{seller.tls_cert}", macaroon: "{seller.invoice_macaroon}"}}
store: {{url: "sqlite:///{store}"}}
verified_cache_size: {cache_size}
# The challenge phases mint thousands of invoices from one client (127.0.0.1):
# the per-client challenge rate limit is off so they measure minting, not 429s.
challenge_rate_limit: {{per_minute: 0}}
routes:
  - name: premium
    path: '^{PATH}$'
    upstream: "http://{HOST}:{upstream_port}"
    price_sats: {PRICE_SATS}
    # Like Aperture's invoices (no route hints), so both gateways mint the same kind.
    private_invoices: false
"""
    )
    return config, public, admin


def serve_argv(config: Path, log_level: str, workers: int | None) -> list[str]:
    argv = cli_argv("serve", "--config", str(config), "--log-level", log_level)
    return argv + (["--workers", str(workers)] if workers is not None else [])


async def start_gateway(
    stack: Stack,
    name: str,
    upstream_port: int,
    *,
    cache_size: int,
    workers: int | None = None,
    log_level: str | None = None,
) -> tuple[ManagedProcess, int]:
    """`l402-gateway serve` (`workers` None: serve's default, one per core)."""
    config, public, admin = gateway_config(stack, name, upstream_port, cache_size=cache_size)
    proc = await serve_file(stack, name, config, admin, workers=workers, log_level=log_level)
    return proc, public


async def serve_file(
    stack: Stack,
    name: str,
    config: Path,
    admin: int,
    *,
    workers: int | None = None,
    log_level: str | None = None,
) -> ManagedProcess:
    """`l402-gateway serve` on a written config, stopped with the stack; ready once its
    admin listener (port `admin`) says so."""
    proc = ManagedProcess(
        name,
        serve_argv(config, log_level or stack.gateway_log_level, workers),
        stack.workdir / f"{name}.log",
        detached=False,
    )
    stack.processes.append(proc)
    await wait_http_ok(proc, f"http://{HOST}:{admin}/readyz")
    return proc


async def start_minimal_proxy(stack: Stack, upstream_port: int) -> tuple[ManagedProcess, int]:
    """bench/minimal_proxy.py: aiohttp with a catch-all route and a ClientSession, no L402."""
    port = free_port()
    script = MINIMAL_PROXY
    argv = [sys.executable, str(script), "--port", str(port)]
    proc = ManagedProcess(
        "minimal-proxy",
        [*argv, "--upstream", f"http://{HOST}:{upstream_port}"],
        stack.workdir / "minimal-proxy.log",
        detached=False,
    )
    stack.processes.append(proc)
    await wait_http_ok(proc, f"http://{HOST}:{port}/healthz")
    return proc, port


def aperture_binary() -> tuple[Path | None, str]:
    """The Aperture binary (built on first use), or None and why not."""
    try:
        return find_aperture(), ""
    except ApertureUnavailable as exc:
        return None, str(exc)


def aperture_level(level: str) -> str:
    """Aperture's name for one of our log levels."""
    return {"warning": "warn", "critical": "critical"}.get(level, level)


async def start_aperture(
    stack: Stack, binary: Path, upstream_port: int, *, log_level: str | None = None,
    name: str = "aperture",
) -> ApertureProcess:  # fmt: skip
    """The real Aperture selling the same route (10 sat, same upstream, same LND)."""
    assert stack.descriptor is not None
    level = aperture_level(log_level or stack.gateway_log_level)
    service = ApertureService("premium", f"{HOST}:{upstream_port}", f"^{PATH}$", PRICE_SATS)
    aperture = ApertureProcess(
        binary, stack.descriptor.seller, [service], log_level=level, name=name
    )
    stack.apertures.append(aperture)
    aperture.spawn()  # from the main thread: it dies with us (PR_SET_PDEATHSIG)
    try:
        await asyncio.to_thread(aperture.wait_ready)
    except (RuntimeError, TimeoutError) as exc:
        raise BenchFailure(str(exc)) from None
    return aperture


async def buy_credential(stack: Stack, port: int) -> tuple[str, float, float]:
    """One real L402 purchase from a gateway (ours or Aperture): challenge, pay, credential.

    Returns (Authorization value, challenge seconds, payment seconds)."""
    assert stack.descriptor is not None
    buyer = stack.descriptor.buyer
    t0 = time.perf_counter()
    reply = await fetch_once(Load(port, PATH, None, 402))
    challenge_s = time.perf_counter() - t0
    if reply.status != 402:
        raise BenchFailure(f"expected a 402 challenge, got {reply.status}: {reply.body[:200]!r}")
    # The tiny client keeps the last value of a repeated header: the L402 challenge
    # (both gateways send LSAT first, then L402).
    header = reply.headers.get(b"www-authenticate", b"").decode()
    challenge = parse_challenge([header])
    lnd = LndClient.connect(
        buyer.rpc, tls_cert=Path(buyer.tls_cert), macaroon=Path(buyer.admin_macaroon)
    )
    try:
        t0 = time.perf_counter()
        payment = await lnd.pay_invoice(challenge.invoice, fee_limit_msat=1000, timeout_seconds=60)
        pay_s = time.perf_counter() - t0
    finally:
        await lnd.close()
    return f"L402 {challenge.macaroon}:{payment.preimage.hex()}", challenge_s, pay_s


async def check_paid_body(load: Load, label: str, authorization_headers: int) -> None:
    """The load phases only check status codes; look at one body properly."""
    reply = await fetch_once(load)
    if reply.status != 200:
        raise BenchFailure(f"{label}: status {reply.status}: {reply.body[:200]!r}")
    payload = json.loads(reply.body)
    if (
        payload.get("ok") is not True
        or payload.get("authorizationHeaders") != authorization_headers
    ):
        raise BenchFailure(f"{label}: unexpected body {payload!r}")


T = TypeVar("T")


async def on_regtest(prefix: str, measure: Callable[[Stack], Awaitable[T]]) -> T:
    """`measure` on a fresh regtest network in a new work directory; everything it started
    is stopped afterwards, and a failed run prints every process's log tail first."""
    stack = Stack(Path(tempfile.mkdtemp(prefix=prefix)), gateway_log_level="warning")
    try:
        log("starting the regtest network")
        stack.network = RegtestNetwork()
        stack.descriptor = await asyncio.to_thread(stack.network.start)
        return await measure(stack)
    except BenchFailure:
        for name, tail in stack.log_tails():
            print(f"--- {name} ---\n{tail}", file=sys.stderr)
        raise
    finally:
        stack.stop()
