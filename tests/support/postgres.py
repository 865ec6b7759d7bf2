"""A throw-away real PostgreSQL server for tests.

Uses Debian's binaries (/usr/lib/postgresql/<ver>/bin): initdb into a fresh
temporary directory, pg_ctl start on 127.0.0.1 and a free port with the unix
socket inside that directory, and pg_ctl stop -m fast plus removal of the
directory at the end, so nothing is left behind. PostgreSQL refuses to run as
root, so as root the server commands run as the `postgres` system user (the
package creates it) via runuser.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

SUPERUSER = "l402"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bindir() -> Path | None:
    """Newest /usr/lib/postgresql/<major>/bin that has initdb, pg_ctl and postgres."""
    root = Path("/usr/lib/postgresql")
    candidates = []
    for bindir in root.glob("*/bin"):
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            major = bindir.parent.name
            candidates.append((int(major) if major.isdigit() else 0, bindir))
    return max(candidates)[1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL instance owned by the test session (see module docstring)."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(
                "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin; "
                "run scripts/ensure-system-deps.sh"
            )
        self.bindir = found
        self.port = 0
        self.tmpdir: Path | None = None
        self._as_user: list[str] = []
        self._running = False

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    def _server_cmd(self, tool: str, *args: str) -> list[str]:
        return [*self._as_user, str(self.bindir / tool), *args]

    def _run(self, cmd: list[str], timeout: float = 120) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )

    def start(self) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="l402-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.tmpdir, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        try:
            self._run(
                self._server_cmd(
                    "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust",
                    "-E", "UTF8", "--locale=C", "--no-sync",
                )
            )  # fmt: skip
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise

    def _start_on_free_port(self, attempts: int = 3) -> None:
        assert self.tmpdir is not None
        for attempt in range(attempts):
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmpdir}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            cmd = self._server_cmd(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.tmpdir / "server.log"),
                "-w", "-t", "60", "-o", options, "start",
            )  # fmt: skip
            try:
                self._run(cmd)
            except RuntimeError:
                if attempt == attempts - 1:
                    log = (self.tmpdir / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
                continue
            self._running = True
            return

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._run(
                self._server_cmd("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
            )
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _client(self, tool: str, *args: str) -> None:
        self._run([str(self.bindir / tool), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", SUPERUSER, *args], timeout=60)  # fmt: skip

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._client("createdb", name)
        return name

    def sql(self, database: str, statement: str) -> None:
        """Run one statement with psql as the superuser."""
        self._client("psql", "-d", database, "-v", "ON_ERROR_STOP=1", "-c", statement)

    def drop_database(self, name: str) -> None:
        self._client("dropdb", "--force", "--if-exists", name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
