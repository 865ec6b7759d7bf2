"""CPU and memory of processes and of the whole machine, from /proc (Linux)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (a gateway's supervisor and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = Path(f"/proc/{current}/task").iterdir()
            for task in tasks:
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _own_cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live children (all threads), in seconds.

    A gateway runs as a supervisor and worker processes: all of them count.
    A child that exited and was reaped stops counting (restarts are not expected
    during a measurement). 0 when the process is gone.
    """
    if pid <= 0:
        return 0.0
    return sum(_own_cpu_seconds(p) for p in tree(pid))


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    """Resident set size of a process and its live children in MiB (VmRSS); 0 when gone."""
    return round(sum(rss_parts(pid)), 1)


def rss_parts(pid: int) -> list[float]:
    """VmRSS in MiB of `pid` and each live descendant, the process itself first."""
    if pid <= 0:
        return []
    return [round(_status_kib(member, "VmRSS:") / 1024, 1) for member in tree(pid)]


def pss_mib(pid: int) -> float:
    """Proportional set size of the tree in MiB: pages shared between its processes
    (or with others) are divided among them, so the sum is what the tree really holds."""
    if pid <= 0:
        return 0.0
    return round(sum(_pss_kib(member) for member in tree(pid)) / 1024, 1)


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
