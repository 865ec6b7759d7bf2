"""Aperture master's reference price server, meterd, as a real peer of our pricer client.

The binary comes from `deploy/meterd/build.sh` (the master source tarball,
Go module proxy only), cached under ~/.cache/l402-gateway/bin/meterd-<commit>/.
`MeterdProcess` writes a config into a fresh temporary directory, starts
meterd on a free loopback port, and stops it by its PID; nothing is left (the
directory is named `l402-regtest-meterd-*`, which .ci/run's leftover check
covers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from gateway.regtest.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "deploy" / "meterd" / "build.sh"
NO_SOURCE_EXIT = 3
BUILD_TIMEOUT_SECONDS = 1800.0


class MeterdUnavailable(RuntimeError):
    """No Aperture master source to build meterd from (the only reason to skip)."""


def meterd_required() -> bool:
    """CI and L402_REQUIRE_METERD=1 turn a missing meterd into a failure."""
    return bool(os.environ.get("CI")) or os.environ.get("L402_REQUIRE_METERD") == "1"


def find_meterd() -> Path:
    """$L402_METERD_BIN, else the cached build (built on first use)."""
    given = os.environ.get("L402_METERD_BIN")
    if given:
        return Path(given)
    try:
        done = subprocess.run(
            [str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"building meterd took over {BUILD_TIMEOUT_SECONDS:.0f} s") from None
    if done.returncode == NO_SOURCE_EXIT:
        raise MeterdUnavailable(done.stderr.strip() or "Aperture master source not found")
    if done.returncode != 0:
        raise RuntimeError(f"building meterd failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class MeterdProcess:
    """One meterd with a static rate table (see its `meterd --help`)."""

    def __init__(self, binary: Path, config: dict[str, object]) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="l402-regtest-meterd-"))
        self.config = {**config, "listenaddr": f"127.0.0.1:{self.port}"}
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        path = self.dir / "meterd.yaml"
        path.write_text(yaml.safe_dump(self.config))
        self.process = ManagedProcess(
            "meterd", [str(self.binary), "--config", str(path)], self.dir / "meterd.log",
            detached=False,
        )  # fmt: skip
        return self

    def log_tail(self) -> str:
        return self.process.log_tail(40) if self.process else ""

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
