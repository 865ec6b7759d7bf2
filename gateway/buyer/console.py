"""The CLI's terminal I/O: writes that survive a reader that went away, and the prompt.

A closed stdout (`l402-buyer fetch ... --json | head -c1`) is not a failure of
the buyer: the payment and the cached credential are already done, and the
reader chose to stop. So a `BrokenPipeError` is swallowed, the stream is
pointed at /dev/null (otherwise Python's final flush at exit reports the same
error as "Exception ignored ..." on stderr), and the exit status stays the
run's own (0 success, 1 failure) rather than 141: scripts using
`set -o pipefail` then fail only when the buyer did.

The approval prompt goes to stderr (stdout carries the answer or the JSON
report) and waits at most `APPROVAL_TIMEOUT` seconds; no answer, end of input
or anything but y/yes means no.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import TextIO

APPROVAL_TIMEOUT = 300.0


def _silence(stream: TextIO) -> None:
    """Send whatever is still buffered for `stream`, and anything later, to /dev/null."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


def _write(stream: TextIO, data: str | bytes) -> None:
    try:
        if isinstance(data, bytes):
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()
        else:
            stream.write(data)
            stream.flush()
    except BrokenPipeError:
        _silence(stream)


def out(data: str | bytes) -> None:
    """Write to stdout (bytes unchanged, e.g. a binary body), tolerating a closed pipe."""
    _write(sys.stdout, data)


def err(line: str, *, end: str = "\n") -> None:
    """One line to stderr, tolerating a closed pipe."""
    _write(sys.stderr, line + end)


def _read_line_blocking(stream: TextIO) -> str:
    try:
        return stream.readline()
    except (OSError, ValueError):
        return ""


async def read_answer(stream: TextIO, timeout: float = APPROVAL_TIMEOUT) -> str | None:
    """A line from `stream` within `timeout` seconds; None on timeout, "" at end of input.

    Waits with the event loop's reader (a terminal or a pipe) so the wait can
    time out and Ctrl-C stays immediate; a regular file or /dev/null, which
    the loop cannot watch, never blocks, so it is simply read.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        fd = stream.fileno()
        loop.add_reader(fd, wake)
    except (OSError, ValueError, NotImplementedError):
        return _read_line_blocking(stream)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        return None
    finally:
        loop.remove_reader(fd)
    return _read_line_blocking(stream)


async def confirm(prompt: str, timeout: float = APPROVAL_TIMEOUT) -> bool:
    """Ask on stderr, read stdin: True only for y/yes within `timeout`."""
    err(prompt, end="")
    if sys.stdin is None:  # started with no stdin at all
        err("")
        return False
    answer = await read_answer(sys.stdin, timeout)
    if answer is None:
        err("")
        err(f"l402-buyer: no answer in {timeout:g} s: not paying")
        return False
    return answer.strip().lower() in ("y", "yes")
