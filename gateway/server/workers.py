"""`serve --workers N`: every core in use, one supervisor, N worker processes.

Each worker is a whole gateway (edge, paywall, proxy, HTTP/2 engine) serving
the public listener on its own SO_REUSEPORT socket, so the kernel spreads
connections across workers; each keeps its own caches. The supervisor serves
the admin listener alone: /healthz, /readyz (LND, store, and every worker
alive) and /metrics, which sums every worker's series through
prometheus-client's multiprocess mode (each process writes its values to
files in a private directory the supervisor creates and removes).

Work that must run once per store (the settlement follower, the pruner) runs
in whichever worker holds the store's leader lock (gateway.jobs.leadership); when
that worker dies another takes over. SIGHUP and SIGTERM sent to the
supervisor reach every worker (a config that fails validation is not sent
on); a worker that dies is restarted, with a growing pause if it keeps dying
at start-up, and the supervisor gives up (exit 1) when one cannot start at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import load_config
from gateway.config.errors import ConfigErrors
from gateway.config.model import GatewayConfig
from gateway.lifetime import die_with_parent

if TYPE_CHECKING:  # imported lazily: prometheus-client must load after metrics_directory()
    from gateway.server.admin_api import ReloadResult

log = logging.getLogger("gateway.workers")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_PAUSE_MAX = 30.0
FAST_EXIT_SECONDS = 5.0  # a worker that dies this soon after starting "could not start"
GIVE_UP_AFTER = 5  # consecutive fast exits of one worker
STOP_GRACE = 35.0  # workers finish in-flight requests (30 s) before being killed


def _worker_argv(config: Path, log_level: str, log_file: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "gateway.server.workers", str(config), "--log-level", log_level]
    if log_file is not None:
        argv += ["--log-file", str(log_file)]
    return argv


READY_LINE = b"listening\n"  # a worker writes it on stdout once its listener accepts


class Worker:
    def __init__(self, index: int, argv: list[str]) -> None:
        self.index = index
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.fast_exits = 0
        self.listening = False

    async def start(self) -> None:
        self.started = time.monotonic()
        self.listening = False
        # No preexec_fn: Python can then vfork, which runs no fork handlers (gRPC's
        # print a warning on stderr once LND channels exist); the worker arms its own
        # death signal first thing (_worker_main).
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            "--supervisor",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # READY_LINE, then nothing
        )
        log.info("worker started", extra={"config": f"worker={self.index} pid={self.proc.pid}"})

    async def wait_listening(self) -> None:
        """Until the worker says it accepts connections (or exits)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        self.listening = line == READY_LINE

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)


class Supervisor:
    def __init__(
        self, config_path: Path, count: int, log_level: str, log_file: Path | None
    ) -> None:
        self.config_path = config_path
        self.config: GatewayConfig = load_config(config_path)
        argv = _worker_argv(config_path, log_level, log_file)
        self.workers = [Worker(index, argv) for index in range(count)]
        self._stopping = asyncio.Event()
        self._failed = False
        self._watchers: list[asyncio.Task[None]] = []
        self.admin = _Admin(self.config, self)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGINT, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        await self._check_public_port()
        admin = self.admin
        await admin.start()
        try:
            for worker in self.workers:
                await worker.start()
                self._watchers.append(asyncio.create_task(self._watch(worker)))
            log.info("supervising workers", extra={"config": f"workers={len(self.workers)}"})
            await self._stopping.wait()
        finally:
            await self._stop_workers()
            await admin.stop()
        return 1 if self._failed else 0

    async def _check_public_port(self) -> None:
        """Bind the public address once, as a worker will, and let go: a busy port is one
        clear error here (OSError, as `serve` reports it), not workers dying in a loop."""
        public = self.config.listen.public
        loop = asyncio.get_running_loop()
        probe = await loop.create_server(
            asyncio.Protocol, public.host, public.port, reuse_address=True, reuse_port=True
        )
        probe.close()
        await probe.wait_closed()

    def _stop(self) -> None:
        self._stopping.set()

    def _reload(self) -> ReloadResult:
        """Validate the file here; only a valid one is sent on (SIGHUP) to every worker."""
        from gateway.server.admin_api import ReloadResult

        try:
            config = load_config(self.config_path)
        except (ConfigErrors, OSError) as exc:
            self.admin.metrics.config_reloads.labels(result="error").inc()
            log.error(
                "config reload refused; workers keep the running config",
                extra={"config": str(self.config_path), "error": str(exc)},
            )
            errors = exc.errors if isinstance(exc, ConfigErrors) else ()
            return ReloadResult(False, errors=tuple(str(e) for e in errors) or (str(exc),))
        self.config = config
        self._signal_workers()
        log.info("config reload sent to every worker", extra={"config": str(self.config_path)})
        return ReloadResult(True, routes=len(config.routes))

    def _signal_workers(self) -> None:
        for worker in self.workers:
            worker.signal(signal.SIGHUP)

    async def reload_hook(self) -> ReloadResult:
        """The admin API's POST /admin/reload."""
        return self._reload()

    async def revoked_hook(self) -> bool:
        """After a revocation through the admin API: every worker drops its verified-credential
        cache (SIGHUP; it also re-reads routes.yaml, unchanged)."""
        self._signal_workers()
        return True

    async def _watch(self, worker: Worker) -> None:
        """Restart `worker` whenever it dies, until the supervisor stops."""
        pause = 0.5
        while not self._stopping.is_set():
            assert worker.proc is not None
            await worker.wait_listening()
            code = await worker.proc.wait()
            worker.listening = False
            if self._stopping.is_set():
                return
            _mark_dead(worker.proc.pid)
            lived = time.monotonic() - worker.started
            worker.fast_exits = worker.fast_exits + 1 if lived < FAST_EXIT_SECONDS else 0
            log.error(
                "worker died; restarting",
                extra={"config": f"worker={worker.index} exit={code} lived={lived:.1f}s"},
            )
            if worker.fast_exits >= GIVE_UP_AFTER:
                log.error(
                    "a worker cannot start; stopping", extra={"config": f"worker={worker.index}"}
                )
                self._failed = True
                self._stopping.set()
                return
            pause = min(pause * 2, RESTART_PAUSE_MAX) if worker.fast_exits else 0.5
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause if worker.fast_exits else 0):
                    await self._stopping.wait()
            if not self._stopping.is_set():
                await worker.start()

    async def _stop_workers(self) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await worker.proc.wait()
            except TimeoutError:
                log.error(
                    "worker did not stop; killing it", extra={"config": f"worker={worker.index}"}
                )
                worker.signal(signal.SIGKILL)
                await worker.proc.wait()

    def workers_listening(self) -> tuple[int, int]:
        return sum(1 for w in self.workers if w.alive and w.listening), len(self.workers)


def _mark_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    directory = os.environ.get(METRICS_DIR_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class _Admin:
    """The supervisor's admin listener, with its own LND client and store for /readyz."""

    def __init__(self, config: GatewayConfig, supervisor: Supervisor) -> None:
        from prometheus_client import CollectorRegistry, multiprocess

        from gateway.observability.metrics import GatewayMetrics
        from gateway.server.admin import create_admin_app
        from gateway.server.admin_api import auth_for
        from gateway.server.admin_sessions import StandaloneCloser
        from gateway.server.app import backend_context, store_context
        from gateway.server.keys import METRICS_KEY
        from gateway.server.serve import admin_listening

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=os.environ[METRICS_DIR_ENV])  # type: ignore[no-untyped-call]
        metrics = self.metrics = GatewayMetrics()  # this process's own series (lnd_up, reloads)
        sessions = StandaloneCloser(config, metrics)  # POST /admin/sessions/{id}/close
        self.app = create_admin_app(
            None,
            registry,
            contexts=(
                store_context(config),
                backend_context(config, metrics),
                sessions.context,
            ),
            extra_checks=lambda: _workers_check(supervisor),
            auth=auth_for(config),
            routes=lambda: supervisor.config.routes,
            reload=supervisor.reload_hook,
            revoked=supervisor.revoked_hook,
            sessions=sessions.close,
        )
        self.app[METRICS_KEY] = metrics
        self.listening = admin_listening(self.app, config.listen.admin)

    async def start(self) -> None:
        await self.listening.start()

    async def stop(self) -> None:
        self.listening.stop_accepting()
        await self.listening.finish()


def _workers_check(supervisor: Supervisor) -> dict[str, str]:
    listening, total = supervisor.workers_listening()
    return {"workers": "ok" if listening == total else f"{listening} of {total} listening"}


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """A private directory for every process's metric files, removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="l402-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def supervise(config_path: Path, count: int, log_level: str, log_file: Path | None) -> int:
    """Run the supervisor until SIGTERM/SIGINT; the process's exit code."""
    with metrics_directory():
        return asyncio.run(Supervisor(config_path, count, log_level, log_file).run())


def _worker_main(argv: list[str] | None = None) -> int:
    """One worker: the public listener only, on a SO_REUSEPORT socket."""
    from gateway.observability import logsetup as logs
    from gateway.server.serve import serve

    parser = argparse.ArgumentParser(prog="gateway.server.workers")
    parser.add_argument("config", type=Path)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--supervisor", type=int, default=None)
    args = parser.parse_args(argv)
    if args.supervisor is not None:
        die_with_parent()  # never outlive a supervisor killed with SIGKILL ...
        if os.getppid() != args.supervisor:
            return 1  # ... including one that died before the line above ran
    logs.configure(args.log_level, log_file=args.log_file)

    def listening() -> None:
        sys.stdout.buffer.write(READY_LINE)
        sys.stdout.buffer.flush()

    asyncio.run(serve(args.config, serve_admin=False, reuse_port=True, on_listening=listening))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
