"""Where log lines go: stderr or a private log file, and what a failing write does.

A log file the gateway creates is mode 0600 whatever the umask (the mode is set
with fchmod after creation, because a umask can only remove bits and a
permissive one would leave the file world-readable). An existing file keeps its
owner's choice unless others may read or anyone but the owner may write it;
then group-write and all "other" bits are removed (0640 at most), or start-up
fails if it is not ours to change. The file is reopened the same way when
logrotate moves it away (WatchedFileHandler semantics), so no rotation step
ever recreates it 0644.

A write that fails (disk full, closed pipe) must neither raise into the
request path nor print the record: `logging.Handler.handleError` would dump
the record's raw message and arguments to stderr, bypassing every filter. Ours
prints one fixed line, at most once a minute.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

FILE_MODE = 0o600
MAX_EXISTING_MODE = 0o740  # owner anything, group read, nobody else
ERROR_REPORT_INTERVAL = 60.0


class LogSetupError(Exception):
    """Logging cannot be set up as asked (bad level, unusable log file)."""


def open_log_file(path: Path) -> int:
    """An append-only descriptor on `path`, created 0600 if it did not exist."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        fd = -1
    except OSError as exc:
        raise LogSetupError(f"{path}: cannot create log file: {exc.strerror}") from exc
    if fd >= 0:
        os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask removed or not
        return fd
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise LogSetupError(f"{path}: cannot open log file: {exc.strerror}") from exc
    try:
        _tighten_existing(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tighten_existing(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return  # /dev/stderr, a FIFO to a log shipper: not ours to chmod
    mode = stat.S_IMODE(info.st_mode)
    if mode & ~MAX_EXISTING_MODE == 0:
        return
    try:
        os.fchmod(fd, mode & MAX_EXISTING_MODE)
    except OSError as exc:
        raise LogSetupError(
            f"{path}: log file mode {mode:o} lets others read or write it, and it "
            f"cannot be changed ({exc.strerror}); fix its permissions (0600 or 0640)"
        ) from exc


class QuietErrors(logging.Handler):
    """`handleError` that reports the failure's type, never the record; and lines written
    in batches (`write_soon`) ahead of any record emitted after them."""

    _last_error_report = float("-inf")
    _pending: list[str] | None = None  # lines queued by write_soon, not written yet

    def write_soon(self, line: str) -> None:
        """Queue a formatted line (newline added): written with the others queued in the
        same event-loop iteration, in one write, once that iteration's callbacks ran (at
        once outside a running loop; before any record emitted after it). One write per
        line was a quarter of the CPU of a paid request in the benchmark (bench/README.md);
        waiting longer (50 ms) to share a write saved nothing more measurable."""
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            if pending:
                pending.append(line)
                return
            self._pending = [line]
        loop = _running_loop()
        if loop is None:
            self.flush_pending()
        else:
            loop.call_soon(self.flush_pending)

    def flush_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending, self._pending = self._pending, None
            if not pending:
                return
            pending.append("")
            try:
                self.write_text("\n".join(pending))
            except Exception:
                self.handleError(None)  # type: ignore[arg-type]

    def write_text(self, text: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        self.flush_pending()
        super().flush()

    def handleError(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now - self._last_error_report < ERROR_REPORT_INTERVAL:
            return
        self._last_error_report = now
        failure = sys.exc_info()[0]
        name = failure.__qualname__ if failure is not None else "unknown error"
        with contextlib.suppress(Exception):
            sys.__stderr__.write(  # type: ignore[union-attr]
                f"l402-gateway: a log line could not be written ({name}); "
                "further failures are reported at most once a minute\n"
            )

    def close(self) -> None:
        """Write queued lines and pending suppression counts before the stream goes away."""
        with contextlib.suppress(Exception):
            self.flush_pending()
        for f in list(self.filters):
            drain = getattr(f, "drain", None)
            if callable(drain):
                with contextlib.suppress(Exception):
                    drain()
        with contextlib.suppress(OSError, ValueError):  # a stream that already broke
            super().close()


def _running_loop() -> Any:
    """The running asyncio loop, if asyncio is loaded and one runs (a process without
    asyncio, such as the worker supervisor, never imports it for this)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio.events._get_running_loop() if asyncio is not None else None


class SafeStreamHandler(QuietErrors, logging.StreamHandler):  # type: ignore[type-arg]
    """stderr (or any stream) with quiet write failures."""

    def __init__(self, stream: TextIO | None = None) -> None:
        logging.StreamHandler.__init__(self, stream if stream is not None else sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.flush_pending()  # lines queued before this record go out before it
        logging.StreamHandler.emit(self, record)

    def write_text(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class SecureFileHandler(QuietErrors, logging.handlers.WatchedFileHandler):
    """Appends to a 0600 file; reopens it (0600 again) when logrotate moves it.

    WatchedFileHandler stats the path before every line; here at most once per
    `check_every` seconds (a stat costs about as much as the rest of an access
    line's I/O), so lines written in the second after a rotation still reach
    the rotated file, which is where logrotate expects late lines anyway.
    """

    def __init__(
        self, path: Path, *, check_every: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = Path(os.path.abspath(path))  # reopening must not depend on the cwd
        self._check_every = check_every
        self._clock = clock
        self._next_check = clock() + check_every
        logging.handlers.WatchedFileHandler.__init__(self, str(self._path), encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.flush_pending()  # lines queued before this record go out before it
        if self._check_rotation():
            logging.FileHandler.emit(self, record)

    def _check_rotation(self) -> bool:
        """Reopen the file if logrotate moved it (at most once per `check_every`); False
        when that failed (reported quietly: never into the request path)."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._check_every
            try:
                self.reopenIfNeeded()  # may fail (directory gone)
            except Exception:
                self.handleError(None)  # type: ignore[arg-type]
                return False
        return True

    def write_text(self, text: str) -> None:
        if not self._check_rotation():
            return
        if self.stream is None:
            self.stream = self._open()
        self.stream.write(text)
        self.stream.flush()

    def _open(self) -> io.TextIOWrapper:
        fd = open_log_file(self._path)
        return open(fd, "a", encoding="utf-8", errors="backslashreplace", closefd=True)
