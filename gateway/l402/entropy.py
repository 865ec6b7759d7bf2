"""Random bytes for root keys and token ids, fetched from the kernel in blocks.

Each challenge needs 64 random bytes (a root key and a token id). On this
class of machine a getrandom() call cost as much as the rest of minting
(a tenth of a challenge's CPU for two calls), so bytes are read from
os.urandom 8 KiB at a time and handed out once each: the same kernel CSPRNG
output, far fewer system calls. Bytes never repeat and are dropped from the
buffer as they are handed out; the buffer lives only in this process's memory,
as the root keys it becomes already do.
"""

from __future__ import annotations

import os
import threading

BLOCK = 8192


class EntropyPool:
    """`take(n)`: n fresh random bytes (thread-safe)."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._buffer = b""
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        if n > self._block:
            return os.urandom(n)
        with self._lock:
            if len(self._buffer) < n:
                self._buffer = os.urandom(self._block)
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
