"""Stopping only the processes an earlier `regtest up` / `make run` started, by identity.

A PID written to `.regtest/network.json` may belong to someone else by the
time `make regtest-down` runs: after a reboot, or after a daemon restarted by
hand, the kernel hands the number out again, and a SIGTERM followed by a
SIGKILL 20 s later would end an unrelated process. So each recorded PID
travels with what identifies its process:

- its start time (`/proc/<pid>/stat` field 22, clock ticks since boot), which
  differs for any later process that reuses the number; and
- a marker its command line holds, as whole arguments (`--lnddir=<dir>`, the
  gateway's config path, `--port N`), which also covers descriptors written
  before start times were recorded.

A process is signalled only when every recorded mark matches, and through a
pidfd opened before the check, so the signal cannot reach a process that
took the PID in between. Without /proc (not Linux) nothing is signalled.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


class Outcome(enum.Enum):
    STOPPED = "stopped"
    GONE = "gone"  # no process had that PID any more
    SKIPPED = "skipped"  # the PID is someone else's now, or cannot be told


@dataclass(frozen=True)
class Recorded:
    """A process as `up` recorded it: `name` for messages, then what identifies it."""

    name: str
    pid: int
    start_ticks: int | None = None
    marker: str | None = None


@dataclass(frozen=True)
class StopResult:
    process: Recorded
    outcome: Outcome
    reason: str = ""

    def line(self) -> str:
        who = f"{self.process.name} (PID {self.process.pid})"
        if self.outcome is Outcome.STOPPED:
            return f"stopped {who}"
        if self.outcome is Outcome.GONE:
            return f"{who} had already exited"
        return f"skipped {who}: {self.reason}; not signalled"


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When the process started, in clock ticks since boot; None if there is none."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] here is field 3 (state)
    except (IndexError, ValueError):
        return None


def command_line(pid: int, proc: Path = PROC) -> list[str] | None:
    """The process's arguments (None when unreadable)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def holds(argv: list[str], marker: str) -> bool:
    """`marker`'s space-separated words appear as consecutive whole arguments of `argv`."""
    words = marker.split(" ")
    return any(argv[i : i + len(words)] == words for i in range(len(argv) - len(words) + 1))


def recorded(name: str, pid: int, marker: str | None = None) -> Recorded:
    """What to write down for a process just started (by the caller, so still alive)."""
    return Recorded(name, pid, start_ticks(pid), marker)


def _mismatch(process: Recorded, proc: Path) -> str | None:
    """Why the process now at `process.pid` is not the recorded one (None: it is)."""
    if process.start_ticks is None and process.marker is None:
        return "nothing was recorded to tell it apart from another process"
    ticks = start_ticks(process.pid, proc)
    if ticks is None:
        return "its start time cannot be read"
    if process.start_ticks is not None and ticks != process.start_ticks:
        return "the PID now belongs to another process (a different start time)"
    if process.marker is not None:
        argv = command_line(process.pid, proc)
        if argv is None or not holds(argv, process.marker):
            return (
                "the process holding the PID is not the one recorded"
                f" ({process.marker!r} is not in its command line)"
            )
    return None


def _wait_exit(pidfd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def stop_owned(process: Recorded, timeout: float = 20.0, proc: Path = PROC) -> StopResult:
    """SIGTERM (SIGKILL after `timeout`) to the recorded process, if it is still that one."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return StopResult(process, Outcome.GONE)
    except (OSError, AttributeError) as exc:  # no pidfds (old kernel, not Linux)
        return StopResult(process, Outcome.SKIPPED, f"cannot pin the process down ({exc})")
    try:
        if not proc.is_dir():
            return StopResult(
                process, Outcome.SKIPPED, f"cannot tell who holds it ({proc} is absent)"
            )
        if not (proc / str(process.pid)).exists():
            return StopResult(process, Outcome.GONE)  # exited and reaped since pidfd_open
        why = _mismatch(process, proc)
        if why is not None:
            return StopResult(process, Outcome.SKIPPED, why)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        except ProcessLookupError:
            return StopResult(process, Outcome.GONE)
        if not _wait_exit(pidfd, timeout):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_exit(pidfd, 5.0)
        return StopResult(process, Outcome.STOPPED)
    finally:
        os.close(pidfd)
