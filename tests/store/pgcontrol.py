"""A private PostgreSQL instance a test may pause, stop hard and start again.

Never the session's shared server: these tests break their own instance.
Processes are addressed by PID only (the postmaster's, from postmaster.pid,
and its children's), all of them started by this instance.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.postgres import PostgresServer


class ControlledPostgres(PostgresServer):
    def _postmaster_pid(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().splitlines()[0])

    def pids(self) -> list[int]:
        """The postmaster and every process it forked (backends, writer, checkpointer, ...)."""
        root = self._postmaster_pid()
        children = []
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited meanwhile
            if int(fields[1]) == root:
                children.append(int(stat_file.parent.name))
        return [root, *children]

    def pause(self) -> None:
        """SIGSTOP the whole instance: connections stay open and nothing answers (a hung host)."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    def stop_hard(self) -> None:
        """`pg_ctl stop -m fast`: every connection is dropped at once, the data stays."""
        self._run(self._server_cmd("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop"))
        self._running = False

    def start_again(self) -> None:
        """Start on the same port (the DSNs given out stay valid)."""
        assert self.tmpdir is not None
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmpdir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            self._server_cmd(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.tmpdir / "server.log"),
                "-w", "-t", "60", "-o", options, "start",
            )
        )  # fmt: skip
        self._running = True
