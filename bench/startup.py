"""Start-up figures: from `exec` to the first 402, and how long each CLI command takes.

- **First 402**: the wall time from spawning a gateway (ours: `l402-gateway
  serve` with the given workers; Aperture: its binary) to the first complete
  402 answer carrying `WWW-Authenticate` on its public port: the process has
  started, listens, reached LND and minted a real invoice. The probe is a
  fresh connection every `POLL_SECONDS` while nothing answers; an answer other
  than the 402 (a 503 while starting) is retried too. Ours and Aperture
  alternate, each start on a fresh store, and each is stopped (SIGTERM, by
  PID) before the next.
- **CLI**: the wall time of short commands (`--version`, `check-config`,
  `l402-buyer --version`) as a person runs them (the console scripts).

Every figure carries the 1-minute load average when it was taken: on a
shared 2-core machine start-up times scale with the load.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.phase import BenchFailure
from bench.stack import (
    HOST,
    PATH,
    PRICE_SATS,
    Stack,
    aperture_level,
    gateway_config,
    log,
    serve_argv,
)
from gateway.regtest.processes import ManagedProcess
from tests.support.aperture import ApertureProcess, ApertureService

POLL_SECONDS = 0.002
FIRST_402_TIMEOUT = 60.0


@dataclass
class Timing:
    """Repeated wall times of one thing (seconds), each with the load average at the time."""

    name: str
    seconds: list[float] = field(default_factory=list)
    loadavg: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.seconds.append(round(seconds, 4))
        self.loadavg.append(round(os.getloadavg()[0], 2))

    def summary(self) -> dict[str, object]:
        return {
            "median_s": round(statistics.median(self.seconds), 4) if self.seconds else None,
            "min_s": min(self.seconds, default=None),
            "max_s": max(self.seconds, default=None),
            "runs": self.seconds,
            "loadavg": self.loadavg,
        }


def _answer_402(port: int) -> bool:
    """One GET on a fresh connection: True for a 402 with WWW-Authenticate."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(b"http/1.1 402") and b"\r\nwww-authenticate:" in head


def wait_first_402(port: int, alive: Callable[[], bool], t0: float) -> float:
    """Seconds from `t0` (perf_counter) to the first 402 on `port`."""
    while True:
        if time.perf_counter() - t0 > FIRST_402_TIMEOUT:
            raise BenchFailure(f"no 402 on :{port} within {FIRST_402_TIMEOUT:.0f} s")
        if not alive():
            raise BenchFailure(f"the process behind :{port} exited before its first 402")
        try:
            if _answer_402(port):
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(POLL_SECONDS)


async def first_402_ours(stack: Stack, index: int, upstream_port: int, workers: int) -> float:
    store = stack.workdir / f"startup-{index}.db"
    config, public, _ = gateway_config(
        stack, f"startup-{index}", upstream_port, cache_size=10000, store=store
    )
    argv = serve_argv(config, stack.gateway_log_level, workers)
    t0 = time.perf_counter()
    proc = ManagedProcess(
        f"startup-{index}", argv, stack.workdir / f"startup-{index}.log", detached=False
    )
    try:
        return await asyncio.to_thread(wait_first_402, public, proc.alive, t0)
    finally:
        proc.stop(timeout=15)


async def first_402_aperture(stack: Stack, binary: Path, index: int, upstream_port: int) -> float:
    assert stack.descriptor is not None
    service = ApertureService("premium", f"{HOST}:{upstream_port}", f"^{PATH}$", PRICE_SATS)
    aperture = ApertureProcess(
        binary,
        stack.descriptor.seller,
        [service],
        log_level=aperture_level(stack.gateway_log_level),
        name=f"aperture-startup-{index}",
    )
    t0 = time.perf_counter()
    aperture.spawn()  # from the main thread: it dies with us (PR_SET_PDEATHSIG)
    try:
        assert aperture.proc is not None
        return await asyncio.to_thread(wait_first_402, aperture.port, aperture.proc.alive, t0)
    finally:
        aperture.remove()


async def measure_first_402(
    stack: Stack, binary: Path | None, upstream_port: int, runs: int, workers: int
) -> dict[str, Timing]:
    """Alternating starts of ours (`workers`) and Aperture, `runs` each."""
    ours = Timing(f"ours (--workers {workers})")
    aperture = Timing("Aperture v0.5.0")
    for i in range(runs):
        ours.add(await first_402_ours(stack, i, upstream_port, workers))
        log(f"first 402, ours #{i + 1}: {ours.seconds[-1]:.3f} s (load {ours.loadavg[-1]})")
        if binary is not None:
            aperture.add(await first_402_aperture(stack, binary, i, upstream_port))
            log(
                f"first 402, Aperture #{i + 1}: {aperture.seconds[-1]:.3f} s "
                f"(load {aperture.loadavg[-1]})"
            )
    return {"ours": ours, "aperture": aperture}


def _console_script(name: str) -> list[str]:
    """The installed console script beside this interpreter (as a person runs it)."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = {"l402-gateway": "gateway.cli", "l402-buyer": "gateway.buyer.cli"}[name]
    return [sys.executable, "-m", module]


def measure_cli(config: Path, runs: int) -> dict[str, Timing]:
    """Wall time of short commands, interleaved, `runs` times each."""
    commands = {
        "l402-gateway --version": [*_console_script("l402-gateway"), "--version"],
        "l402-gateway check-config": [
            *_console_script("l402-gateway"),
            "check-config",
            str(config),
        ],
        "l402-buyer --version": [*_console_script("l402-buyer"), "--version"],
    }
    timings = {name: Timing(name) for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            t0 = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
            elapsed = time.perf_counter() - t0
            if done.returncode != 0:
                raise BenchFailure(f"{name} failed ({done.returncode}): {done.stderr[-400:]!r}")
            timings[name].add(elapsed)
    return timings
