"""A worker's admin listener under the supervisor (`serve --workers N`, gateway.server.workers).

Every worker serves the admin listener (SO_REUSEPORT), so whichever answers
must speak for all of them: /metrics sums every worker's metric files
(prometheus-client's multiprocess mode), /readyz adds whether every worker
listens (the supervisor's status file), and a reload or a revocation through
the admin API asks the supervisor (SIGHUP) to have every worker reload and
drop its verified-credential cache, as `kill -HUP <supervisor>` does.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, multiprocess

from gateway.config import ConfigErrors, load_config
from gateway.server.admin_api import ReloadHook, ReloadResult, RevokedHook
from gateway.server.targets import build_targets
from gateway.server.workers import METRICS_DIR_ENV, STATUS_ENV

if TYPE_CHECKING:
    from gateway.config.model import GatewayConfig


@dataclass(frozen=True)
class SupervisorLink:
    pid: int
    metrics_dir: Path
    status_file: Path | None

    @classmethod
    def from_environment(cls, supervisor_pid: int | None) -> SupervisorLink | None:
        """The link a supervised worker inherits (None when not started by a supervisor)."""
        directory = os.environ.get(METRICS_DIR_ENV)
        if supervisor_pid is None or not directory:
            return None
        status = os.environ.get(STATUS_ENV)
        return cls(supervisor_pid, Path(directory), Path(status) if status else None)

    def registry(self) -> CollectorRegistry:
        """Every worker's series, summed (for /metrics); this process's own are among them."""
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        return registry

    def workers_check(self) -> dict[str, str]:
        """/readyz: "ok" once every worker listens."""
        try:
            listening, total = (self.status_file or Path()).read_text().split()
        except (OSError, ValueError):
            return {"workers": "starting"}
        return {"workers": "ok" if listening == total else f"{listening} of {total} listening"}

    def tell_supervisor(self) -> None:
        """Every worker reloads routes.yaml and drops its verified cache (SIGHUP)."""
        os.kill(self.pid, signal.SIGHUP)

    def reload_hook(self, config: GatewayConfig) -> ReloadHook:
        """POST /admin/reload: check the file here (its errors are the answer), then have every
        worker reload it."""

        async def hook() -> ReloadResult:
            path = config.source
            try:
                fresh = load_config(path)
                build_targets(fresh)
            except ConfigErrors as exc:
                return ReloadResult(False, len(config.routes), tuple(str(e) for e in exc.errors))
            except (ValueError, OSError) as exc:
                return ReloadResult(False, len(config.routes), (f"{path}: {exc}",))
            self.tell_supervisor()
            return ReloadResult(True, routes=len(fresh.routes))

        return hook

    def revoked_hook(self, drop_own: RevokedHook | None) -> RevokedHook:
        """After a revocation: this worker's cache now, every worker's at their reload."""

        async def hook() -> bool:
            if drop_own is not None:
                await drop_own()
            self.tell_supervisor()
            return True

        return hook
