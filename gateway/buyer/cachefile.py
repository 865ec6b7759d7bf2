"""The credential cache's file on disk: private, atomic, locked.

The file holds bearer secrets (macaroon + preimage), so:

- it is only ever created 0600 in a directory created 0700: a temp file is
  opened with O_CREAT|O_EXCL and mode 0600 in the same directory, fsynced and
  renamed over the old one, so no reader ever sees a partial file and there
  is no moment where the secret sits in a file with looser permissions;
- it is read through O_NOFOLLOW and checked on the open descriptor (regular
  file, ours, no group/other bits): a file someone else could have read or
  planted is refused, not trusted;
- writers take an exclusive `flock` on a sibling `<name>.lock` file (the data
  file itself is replaced by each write, so it cannot carry the lock) and
  re-read the file under the lock before writing: two buyers sharing one cache
  merge their entries instead of overwriting each other's paid credentials.
  The lock wait has a deadline; a lock never released (a stuck process) turns
  into an `OSError` the caller reports, never a hang.

Everything here is blocking: the cache runs it in a worker thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.buyer.errors import CacheError

MAX_FILE_BYTES = 8 * 1024 * 1024  # ~8000 entries; the cache keeps at most 1000
DEFAULT_LOCK_TIMEOUT = 10.0
_LOCK_POLL_FIRST = 0.002
_LOCK_POLL_MAX = 0.05


def lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def _open_flags(base: int) -> int:
    return base | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def ensure_private_dir(directory: Path) -> None:
    """Create `directory` 0700, or tighten it to 0700 if it is ours and looser.

    Used for the default per-user location only (`~/.cache/l402-buyer`), which
    belongs to the buyer by name; a directory given with `--cache` is the
    operator's choice and is left as it is.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError("cache_unusable", f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise CacheError(
            "insecure_permissions", f"{directory} belongs to uid {info.st_uid}, not to this user"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        directory.chmod(0o700)


def check_writable(path: Path) -> None:
    """Fail now, before any payment, if the cache file could never be written at `path`.

    Creating (or opening) the lock file proves the directory is writable by us.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() and not path.is_file():
            raise CacheError("cache_unusable", f"{path} exists and is not a regular file")
        os.close(os.open(lock_path(path), _open_flags(os.O_RDWR | os.O_CREAT), 0o600))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CacheError(
            "cache_unusable", f"cannot write a cache file at {path}: {reason}"
        ) from None


@contextmanager
def exclusive_lock(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the cache's writer lock; `TimeoutError` (an OSError) after `timeout` seconds.

    flock is polled rather than blocked on so the wait has a deadline (a
    blocking flock in a thread cannot be cancelled).
    """
    fd = os.open(lock_path(path), _open_flags(os.O_RDWR | os.O_CREAT), 0o600)
    try:
        deadline = time.monotonic() + timeout
        pause = _LOCK_POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        errno.ETIMEDOUT, "another process holds the cache lock"
                    ) from None
                time.sleep(pause)  # lock polling, bounded by the deadline above
                pause = min(pause * 2, _LOCK_POLL_MAX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_private(path: Path) -> bytes | None:
    """The file's bytes, or None if there is none; `CacheError` if it is not safe to trust."""
    try:
        fd = os.open(path, _open_flags(os.O_RDONLY))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheError("insecure_permissions", f"{path} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CacheError("cache_unusable", f"{path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise CacheError(
                "insecure_permissions", f"{path} belongs to uid {info.st_uid}, not to this user"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise CacheError(
                "insecure_permissions", f"{path} is accessible to others (mode {mode:o})"
            )
        if info.st_size > MAX_FILE_BYTES:
            raise CacheError("corrupt_cache", f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return handle.read(MAX_FILE_BYTES + 1)


def write_private_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` as mode 0600 with no window where a partial file is visible."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _open_flags(os.O_WRONLY | os.O_CREAT | os.O_EXCL), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
