"""Child processes that die with the process that started them (Linux PR_SET_PDEATHSIG).

Used for the gateway's worker processes and the regtest daemons: a parent
killed with SIGKILL leaves no orphan serving a port or holding a lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Call in the child (a `preexec_fn`): SIGTERM it when the parent *thread* dies.

    The kernel ties this to the thread that forked, so only children spawned
    from the main thread (or an event loop's thread that lives as long as the
    parent) should be armed. A no-op where prctl is unavailable.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
