"""The real Aperture (Lightning Labs' L402 proxy) as a peer on our regtest network.

Used by tests/aperture (compatibility and migration) and by bench/ (Aperture
beside our gateway). The binary comes from `deploy/aperture/build.sh`, which
builds it once from the source tarball into a version-keyed cache; without the
source the tests skip with a clear message, except in CI (`CI` set) or with
`L402_REQUIRE_APERTURE=1`, where they fail. `L402_APERTURE_BIN` points at a
binary built elsewhere.

`ApertureProcess` writes Aperture's YAML (SQLite in a fresh temporary
directory or a PostgreSQL database, plain HTTP on a free 127.0.0.1 port, the
regtest seller LND with its invoice.macaroon), runs it as a child process that
dies with us (PR_SET_PDEATHSIG, via ManagedProcess), waits until it answers
HTTP, and stops it by its PID. Its directory is named `l402-regtest-aperture-*`
so `.ci/run`'s leftover-process check covers it too.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from gateway.regtest.network import NodeInfo
from gateway.regtest.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "deploy" / "aperture" / "build.sh"
NO_SOURCE_EXIT = 3  # build.sh: no source tarball found
BUILD_TIMEOUT_SECONDS = 1800.0  # a cold build takes ~8 minutes on 2 cores
START_TIMEOUT_SECONDS = 60.0


class ApertureUnavailable(RuntimeError):
    """No Aperture source to build from (the only reason a test may skip)."""


def aperture_required() -> bool:
    """CI and L402_REQUIRE_APERTURE=1 turn a missing Aperture into a failure."""
    return bool(os.environ.get("CI")) or os.environ.get("L402_REQUIRE_APERTURE") == "1"


def find_aperture() -> Path:
    """The Aperture binary: $L402_APERTURE_BIN, else the cache (built on first use).

    Raises ApertureUnavailable when there is no source; RuntimeError when a
    build failed (a real failure, never a skip).
    """
    given = os.environ.get("L402_APERTURE_BIN")
    if given:
        path = Path(given)
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"L402_APERTURE_BIN={given} is not an executable file")
        return path
    try:
        done = subprocess.run(
            [str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"building Aperture took over {BUILD_TIMEOUT_SECONDS:.0f} s") from None
    if done.returncode == NO_SOURCE_EXIT:
        raise ApertureUnavailable(done.stderr.strip() or "Aperture source not found")
    if done.returncode != 0:
        raise RuntimeError(f"building Aperture failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def require_aperture() -> Path:
    """find_aperture() for pytest: skip without the source, or fail when it is required."""
    import pytest

    try:
        return find_aperture()
    except ApertureUnavailable as exc:
        message = f"real Aperture unavailable: {exc}"
        if aperture_required():
            pytest.fail(f"{message} (required: CI or L402_REQUIRE_APERTURE=1)")
        pytest.skip(message)


@dataclass
class ApertureService:
    """One entry of Aperture's `services:` list (keys as Aperture spells them)."""

    name: str
    address: str  # upstream host:port
    pathregexp: str
    price: int
    protocol: str = "http"
    hostregexp: str = ".*"
    timeout: int = 0
    capabilities: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_yaml(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "hostregexp": self.hostregexp,
            "pathregexp": self.pathregexp,
            "address": self.address,
            "protocol": self.protocol,
            "price": self.price,
        }
        if self.timeout:
            entry["timeout"] = self.timeout
        if self.capabilities:
            entry["capabilities"] = self.capabilities
        return entry | self.extra


@dataclass(frozen=True)
class PostgresBackend:
    """Aperture's `postgres:` section (trust authentication: no password)."""

    host: str
    port: int
    user: str
    dbname: str


class ApertureProcess:
    """One Aperture instance selling on the regtest seller LND (see module docstring)."""

    def __init__(
        self,
        binary: Path,
        seller: NodeInfo,
        services: list[ApertureService],
        *,
        postgres: PostgresBackend | None = None,
        name: str = "aperture",
        log_level: str = "info",
    ) -> None:
        self.binary = binary
        self.seller = seller
        self.services = services
        self.postgres = postgres
        self.name = name
        self.log_level = log_level  # trace, debug, info, warn, error, critical, off
        self.dir = Path(tempfile.mkdtemp(prefix="l402-regtest-aperture-"))
        self.port = free_port()
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sqlite_path(self) -> Path:
        """Aperture's SQLite database (only with the sqlite backend)."""
        return self.dir / "aperture.db"

    @property
    def config_path(self) -> Path:
        return self.dir / "aperture.yaml"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "Aperture was not started"
        return self.proc.pid

    def config(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "listenaddr": f"127.0.0.1:{self.port}",
            "insecure": True,
            "autocert": False,
            "debuglevel": self.log_level,
            "authenticator": {
                "network": "regtest",
                "lndhost": self.seller.rpc,
                "tlspath": self.seller.tls_cert,
                # Aperture's LND client reads invoice.macaroon from this directory.
                "macdir": str(Path(self.seller.invoice_macaroon).parent),
            },
            "hashmail": {"enabled": False},
            "prometheus": {"enabled": False},
            "tor": {"v3": False},
            "services": [s.as_yaml() for s in self.services],
        }
        if self.postgres is None:
            document["dbbackend"] = "sqlite"
            # `databasefilename`, not the sample's `dbfile` (which Aperture ignores).
            document["sqlite"] = {"databasefilename": str(self.sqlite_path)}
        else:
            document["dbbackend"] = "postgres"
            document["postgres"] = {
                "host": self.postgres.host,
                "port": self.postgres.port,
                "user": self.postgres.user,
                "password": "",
                "dbname": self.postgres.dbname,
                "requiressl": False,
            }
        return document

    def spawn(self) -> None:
        """Write the config and start the process (call from the main thread)."""
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        argv = [str(self.binary), f"--configfile={self.config_path}", f"--basedir={self.dir}"]
        self.proc = ManagedProcess(self.name, argv, self.dir / "aperture.out", detached=False)

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until Aperture answers HTTP (it listens only after reaching LND and its DB)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"Aperture exited early; last log lines:\n{self.log_tail()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Aperture did not answer on {self.url} within {timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/l402-harness-probe")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def start(self) -> Self:
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process by its PID (its data stays until `remove`)."""
        if self.proc is not None:
            self.proc.stop(timeout=20)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
