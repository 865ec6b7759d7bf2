"""One load phase's figures, whichever generator produced the latencies.

A generator (`wrkload` or `pyload`) returns a `LoadSample`; `measure_phase`
wraps it with CPU accounting of every process of interest (from /proc), so
both generators report the same columns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.procstat import cpu_seconds, machine_cpu


class BenchFailure(Exception):
    """A request got an unexpected answer, or a component did not come up."""


@dataclass(frozen=True)
class Load:
    """What to send: GET `path` on 127.0.0.1:`port`, and what must come back."""

    port: int
    path: str
    authorization: str | None
    expected: int  # status every response must have
    need_header: str | None = None  # a header every response must carry (lower case)


@dataclass
class LoadSample:
    """Latency figures of one run of a generator (milliseconds)."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    client_cpu_seconds: float | None = None  # None: charge the "client" pid instead


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
    generator: str = "wrk"
    cpu_percent: dict[str, float] = field(default_factory=dict)
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    machine_busy_percent: float = 0.0  # all cores together: 200 = both cores busy
    others_cpu_percent: float = 0.0  # machine busy minus the processes listed in cpu_percent
    loadavg: float = 0.0  # 1-minute load average at the end of the phase


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def measure_phase(
    *,
    name: str,
    target: str,
    generator: str,
    concurrency: int,
    expected: int,
    pids: dict[str, int],
    run: Callable[[], Awaitable[LoadSample]],
) -> PhaseResult:
    """Run `run()` between two CPU snapshots of `pids` and of the machine."""
    cpu0 = {who: cpu_seconds(pid) for who, pid in pids.items()}
    busy0, _ = machine_cpu()
    t0 = time.perf_counter()
    sample = await run()
    wall = time.perf_counter() - t0
    busy1, _ = machine_cpu()
    cpu = {who: cpu_seconds(pid) - cpu0[who] for who, pid in pids.items()}
    if sample.client_cpu_seconds is not None:
        cpu["client"] = sample.client_cpu_seconds
    elapsed, n = sample.seconds, max(sample.requests, 1)
    busy = busy1 - busy0  # CPU shares are over the wall time of the run (wrk starts up too)
    return PhaseResult(
        name=name,
        target=target,
        concurrency=concurrency,
        requests=sample.requests,
        seconds=round(elapsed, 3),
        throughput_rps=round(sample.requests / elapsed, 1),
        p50_ms=sample.p50_ms,
        p90_ms=sample.p90_ms,
        p99_ms=sample.p99_ms,
        max_ms=sample.max_ms,
        mean_ms=sample.mean_ms,
        expected_status=expected,
        generator=generator,
        cpu_percent={who: round(100 * s / wall, 1) for who, s in cpu.items()},
        cpu_us_per_request={who: round(1e6 * s / n, 1) for who, s in cpu.items()},
        machine_busy_percent=round(100 * busy / wall, 1),
        others_cpu_percent=round(100 * max(busy - sum(cpu.values()), 0.0) / wall, 1),
        loadavg=round(os.getloadavg()[0], 2),
    )
