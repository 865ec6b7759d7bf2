"""`serve --workers N`: every core in use, a small supervisor, N worker processes.

Each worker is a whole gateway (edge, paywall, proxy, HTTP/2 engine, admin
listener) serving the public and the admin listener on SO_REUSEPORT sockets,
so the kernel spreads connections across workers; each keeps its own caches.
Any worker answers /healthz, /readyz and the admin API; /metrics sums every
worker's series through prometheus-client's multiprocess mode (each process
writes its values to files in a private directory the supervisor creates and
removes), so it reads the same whichever worker answers.

The supervisor only keeps the workers running, and loads nothing of the
request path: no aiohttp, no asyncio, no prometheus-client, no store or LND
client (measured before: the supervisor held 61-65 MiB, as much as a worker,
and every worker started only after it had imported all of that). It starts
the first worker before anything else and the others once that one listens
(the first answer does not share the cores with their start), checks the
file and the ports meanwhile, watches them (a pipe tells it when each listens),
restarts one that dies, with a growing pause if it keeps dying at start-up,
and gives up (exit 1) when one cannot start at all. It writes how many
workers listen to a status file each worker's /readyz reads. SIGHUP and
SIGTERM sent to it reach every worker: each worker validates a reloaded file
itself and keeps its running routes when the file is invalid. A worker asks
for the same (SIGHUP to the supervisor) after a reload or a revocation
through the admin API, so every worker reloads and drops its verified cache.

Work that must run once per store (the settlement follower, the pruner) runs
in whichever worker holds the store's leader lock (gateway.jobs.leadership);
when that worker dies another takes over.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("gateway.workers")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STATUS_ENV = "L402_WORKERS_STATUS"  # "listening total", kept by the supervisor
RESTART_PAUSE_MAX = 30.0
FAST_EXIT_SECONDS = 5.0  # a worker that dies this soon after starting "could not start"
GIVE_UP_AFTER = 5  # consecutive fast exits of one worker
STOP_GRACE = 35.0  # workers finish in-flight requests (30 s) before being killed
LATER_WORKERS_AFTER = 5.0  # the others start anyway if the first is not listening by then
READY_LINE = b"listening\n"  # a worker writes it on stdout once its listeners accept
REFUSED = b"refused "  # or this, its exit code, a newline and why (then it exits)
_SAID_LIMIT = 64 * 1024


class StartRefused(Exception):
    """The first worker could not start (a refused file, a busy port, a store that does not
    open): `code` is the exit status a single process would have had."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def _worker_argv(config: Path, log_level: str, log_file: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "gateway.server.workers", str(config), "--log-level", log_level]
    if log_file is not None:
        argv += ["--log-file", str(log_file)]
    return argv


class Worker:
    def __init__(self, index: int, argv: list[str]) -> None:
        self.index = index
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.fast_exits = 0
        self.listening = False
        self.restart_at: float | None = None  # when a dead worker is started again
        self._said = b""

    def start(self, *, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.listening = False
        self.restart_at = None
        self._said = b""
        # No preexec_fn: Python can then use vfork/posix_spawn; the worker arms its own
        # death signal first thing (_worker_main).
        self.proc = subprocess.Popen(
            [*self.argv, "--supervisor", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # READY_LINE, then nothing
        )
        if not quiet:
            self.announce()

    def announce(self) -> None:
        assert self.proc is not None
        log.info("worker started", extra={"config": f"worker={self.index} pid={self.proc.pid}"})

    def hear(self) -> bytes:
        """Read what the worker wrote (b"" once its end of the pipe is closed)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        try:
            data = os.read(self.proc.stdout.fileno(), 4096)
        except (BlockingIOError, ValueError):  # nothing now, or already closed
            return b"?"
        self._said = (self._said + data)[:_SAID_LIMIT]
        if not self.listening and self._said.startswith(READY_LINE):
            self.listening = True
        return data

    @property
    def refusal(self) -> tuple[int, str] | None:
        """(exit code, why) when the worker said it could not start."""
        if not self._said.startswith(REFUSED):
            return None
        head, _, message = self._said.partition(b"\n")
        code = head[len(REFUSED) :]
        return (int(code) if code.isdigit() else 1), message.decode("utf-8", "replace").strip()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)


class Supervisor:
    def __init__(
        self,
        config_path: Path,
        count: int,
        log_level: str,
        log_file: Path | None,
        prepare: Callable[[], None],
        status_file: Path,
    ) -> None:
        self.config_path = config_path
        argv = _worker_argv(config_path, log_level, log_file)
        self.workers = [Worker(index, argv) for index in range(count)]
        self.prepare = prepare
        self.status_file = status_file
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._signals: list[int] = []
        self._stopping = False
        self._failed = False
        self._later: list[Worker] = []  # not started yet (see run)
        self._later_at = 0.0
        self._up = False  # a worker has listened: later start failures are restarts
        self._refused: StartRefused | None = None

    def run(self) -> int:
        """Start the first worker before anything else (it takes longest) and the others once
        it listens, so the first answer does not share the cores with their start. A first
        worker that cannot start (it says why on its pipe) stops the supervisor with its
        reason (StartRefused), as one process would have stopped."""
        self._install_signals()
        try:
            first, *self._later = self.workers
            self._start(first, quiet=True)
            self._later_at = time.monotonic() + LATER_WORKERS_AFTER
            self.prepare()  # logging
            while not self._stopping:
                self._step(self._next_timeout())
        finally:
            self._stop_workers()
            self._restore_signals()
        if self._refused is not None:
            raise self._refused
        return 1 if self._failed else 0

    # -- signals ------------------------------------------------------------------------
    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        for signum in _FORWARDED:
            signal.signal(signum, self._on_signal)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    def _restore_signals(self) -> None:
        for signum in _FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(self._previous_wakeup)
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)  # handled in the loop; the wakeup fd ends its wait

    def _handle_signals(self) -> None:
        pending, self._signals = self._signals, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stopping = True
            elif signum == signal.SIGHUP:
                for worker in self.workers:
                    worker.signal(signal.SIGHUP)
                log.info("reload sent to every worker", extra={"config": str(self.config_path)})

    # -- the loop -----------------------------------------------------------------------
    def _next_timeout(self) -> float | None:
        due = [w.restart_at for w in self.workers if w.restart_at is not None]
        if self._later:
            due.append(self._later_at)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _start_later_workers(self) -> None:
        """Once a worker listens (or after LATER_WORKERS_AFTER, or when the first died)."""
        later, self._later = self._later, []
        for worker in later:
            self._start(worker)

    def _step(self, timeout: float | None) -> None:
        for key, _ in self._selector.select(timeout):
            worker = key.data
            if worker is None:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
                continue
            listening = worker.listening
            if not worker.hear():  # the worker is exiting: reaped below or on SIGCHLD
                self._selector.unregister(key.fileobj)
            if worker.listening != listening:
                if not self._up:  # said once the gateway answers: a refused start says only why
                    self._up = True
                    worker.announce()
                    log.info(
                        "supervising workers", extra={"config": f"workers={len(self.workers)}"}
                    )
                self._write_status()
        self._handle_signals()
        self._reap()
        now = time.monotonic()
        if (
            self._later
            and not self._stopping
            and (now >= self._later_at or any(w.listening or w.restart_at for w in self.workers))
        ):
            self._start_later_workers()
        for worker in self.workers:
            if worker.restart_at is not None and now >= worker.restart_at and not self._stopping:
                self._start(worker)

    def _start(self, worker: Worker, *, quiet: bool = False) -> None:
        worker.start(quiet=quiet)
        assert worker.proc is not None
        assert worker.proc.stdout is not None
        os.set_blocking(worker.proc.stdout.fileno(), False)
        self._selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)

    def _reap(self) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is None or worker.restart_at is not None or proc.poll() is None:
                continue
            self._forget(worker)
            if self._stopping:
                continue
            mark_dead(proc.pid)
            refusal = worker.refusal
            if refusal is not None and not self._up:  # the gateway never started
                self._refused = StartRefused(*refusal)
                self._stopping = True
                return
            if refusal is not None:
                log.error("worker not starting", extra={"error": refusal[1]})
            lived = time.monotonic() - worker.started
            worker.fast_exits = worker.fast_exits + 1 if lived < FAST_EXIT_SECONDS else 0
            log.error(
                "worker died; restarting",
                extra={
                    "config": f"worker={worker.index} exit={proc.returncode} lived={lived:.1f}s"
                },
            )
            if worker.fast_exits >= GIVE_UP_AFTER:
                log.error(
                    "a worker cannot start; stopping", extra={"config": f"worker={worker.index}"}
                )
                self._failed = True
                self._stopping = True
                return
            pause = min(0.5 * 2**worker.fast_exits, RESTART_PAUSE_MAX) if worker.fast_exits else 0
            worker.restart_at = time.monotonic() + pause

    def _forget(self, worker: Worker) -> None:
        assert worker.proc is not None
        assert worker.proc.stdout is not None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(worker.proc.stdout)
        while worker.hear() not in (b"", b"?"):  # what it said before exiting
            pass
        worker.proc.stdout.close()
        worker.listening = False
        self._write_status()

    def _write_status(self) -> None:
        listening = sum(1 for w in self.workers if w.listening)
        temporary = self.status_file.with_suffix(".tmp")
        temporary.write_text(f"{listening} {len(self.workers)}\n")
        os.replace(temporary, self.status_file)

    def _stop_workers(self) -> None:
        self._later = []
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker did not stop; killing it", extra={"config": f"worker={worker.index}"}
                )
                worker.signal(signal.SIGKILL)
                worker.proc.wait()
            if worker.proc.stdout is not None:
                worker.proc.stdout.close()


def mark_dead(pid: int) -> None:
    """Drop a dead worker's "live" gauge files (prometheus-client's multiprocess convention:
    `gauge_live*_<pid>.db`), so /metrics stops counting it; its counters stay summed."""
    directory = os.environ.get(METRICS_DIR_ENV)
    if directory:
        for path in glob.glob(os.path.join(glob.escape(directory), f"gauge_live*_{pid}.db")):
            with contextlib.suppress(OSError):
                os.remove(path)


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


def supervise(
    config_path: Path,
    count: int,
    log_level: str,
    log_file: Path | None,
    prepare: Callable[[], None],
) -> int:
    """Run the supervisor until SIGTERM/SIGINT; the process's exit code. `prepare` sets up
    logging once the first worker is starting. Raises StartRefused when the first worker
    cannot start (the file, the ports and the store are checked there, not here)."""
    with metrics_directory() as directory:
        status = directory / "workers.status"
        os.environ[STATUS_ENV] = str(status)
        try:
            return Supervisor(config_path, count, log_level, log_file, prepare, status).run()
        finally:
            os.environ.pop(STATUS_ENV, None)


def _worker_main(argv: list[str] | None = None) -> int:
    """One worker: the public and admin listeners, on SO_REUSEPORT sockets."""
    import asyncio

    from gateway.config.errors import ConfigErrors
    from gateway.observability import logsetup as logs
    from gateway.server.lifetime import die_with_parent
    from gateway.server.listen_failure import listen_failure
    from gateway.server.serve import serve
    from gateway.server.worker_admin import SupervisorLink
    from gateway.store.types import StoreError

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
    link = SupervisorLink.from_environment(args.supervisor)

    def say(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def refuse(code: int, why: str) -> int:
        """Told to the supervisor, which reports it (or logs it, at a restart) once."""
        say(REFUSED + str(code).encode() + b"\n" + why.encode("utf-8", "replace"))
        return code

    try:
        asyncio.run(
            serve(
                args.config,
                reuse_port=True,
                on_listening=lambda: say(READY_LINE),
                supervisor=link,
            )
        )
    except ConfigErrors as exc:
        return refuse(2, f"{exc}\n{args.config}: {len(exc.errors)} error(s); not starting")
    except OSError as exc:
        return refuse(1, listen_failure(exc))
    except StoreError as exc:
        return refuse(1, f"store: {exc}; not starting")
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
