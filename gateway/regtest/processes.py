"""Child processes of the regtest network: own log each, stopped by their own PID.

Each records its start time too (gateway.regtest.owned): a later `regtest down`
signals a recorded PID only while it still belongs to that process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.regtest.owned import start_ticks
from gateway.server.lifetime import die_with_parent

_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, never the same one twice.

    The kernel may offer a just-released port again at once, so two calls made
    before either port is bound could collide; this process remembers its ports.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class ManagedProcess:
    """One daemon (btcd or lnd) with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, detached: bool) -> None:
        self.name = name
        self.log_path = log_path
        log = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Detached daemons outlive `make regtest-up`; attached ones die with their owner.
                start_new_session=detached,
                # From a worker thread, PDEATHSIG would fire when that thread ends
                # (e.g. asyncio.to_thread's executor shutting down), killing a
                # healthy daemon; such children are stopped by their owner instead.
                preexec_fn=die_with_parent if (not detached and _on_main_thread()) else None,
            )
        finally:
            log.close()
        # Read while the child cannot have been reaped: it is ours and not yet waited for.
        self.start_ticks = start_ticks(self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(
    what: str, probe: Callable[[], bool], timeout: float, *, interval: float = 0.2
) -> None:
    """Poll `probe` until it is true; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
