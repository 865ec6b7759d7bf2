"""CPU and memory of processes and of the whole machine, from /proc (Linux)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 when it is gone."""
    if pid <= 0:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (VmRSS); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, summed over all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


async def wait_for_quiet(max_wait: float, log: object, threshold: float = 30.0) -> float:
    """Wait (bounded) until the machine is nearly idle; returns the last busy % seen."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, total0 = machine_cpu()
        await asyncio.sleep(1.0)
        busy1, total1 = machine_cpu()
        busy = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9) * (os.cpu_count() or 1)
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 1)
        if callable(log):
            log(f"machine busy ({busy:.0f}% of one core) before the load phases; waiting")
