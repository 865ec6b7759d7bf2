"""A bounded tail of a response body, fed as the body streams past.

Usage reports live at the end of an answer (the `usage` member of a JSON
body, the last events of an SSE stream), so the meter keeps only the last N
bytes of what it relays: memory per request is bounded whatever the answer's
size, and nothing is buffered or delayed on the way to the client.

The bytes are held in a fixed ring of N bytes: `feed` copies at most N bytes
of each chunk (O(chunk), never a shift of what is held), and the tail is
assembled once, when the answer is done. Most answers are one small chunk:
while the first (immutable) chunk is all there is, it is kept as it is, and
the ring is made only when a second chunk comes.
"""

from __future__ import annotations

DEFAULT_TAIL_BYTES = 16 * 1024  # Aperture's default (`usagetailbytes`)
MAX_TAIL_BYTES = 1024 * 1024  # Aperture's ceiling too: a tail is per request in flight


class TailCollector:
    """The last `limit` bytes fed, and how many bytes were fed in all."""

    __slots__ = ("_filled", "_first", "_pos", "_ring", "limit", "seen")

    def __init__(self, limit: int = DEFAULT_TAIL_BYTES) -> None:
        if not 1 <= limit <= MAX_TAIL_BYTES:
            raise ValueError(f"tail size must be 1..{MAX_TAIL_BYTES} bytes, got {limit}")
        self.limit = limit
        self._first: bytes | None = None  # the only chunk fed so far, kept as it is
        self._ring: bytearray | None = None  # made when a second chunk comes
        self._pos = 0  # where the next byte goes
        self._filled = 0  # bytes of the ring in use (== limit once wrapped)
        self.seen = 0  # every byte fed, for `unit: bytes` and to tell a cut tail

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        size = len(chunk)
        if size == 0:
            return
        if self.seen == 0 and size < self.limit and type(chunk) is bytes:
            self._first = chunk
            self.seen = self._filled = size
            return
        self.seen += size
        if self._ring is None:
            self._ring = bytearray(self.limit)
            if self._first is not None:  # what was kept goes first
                self._ring[: self._filled] = self._first
                self._pos = self._filled
                self._first = None
        view = memoryview(chunk)
        if size >= self.limit:  # only its last `limit` bytes can survive
            self._ring[:] = view[size - self.limit :]
            self._pos = 0
            self._filled = self.limit
            return
        first = min(size, self.limit - self._pos)
        self._ring[self._pos : self._pos + first] = view[:first]
        rest = size - first
        if rest:
            self._ring[:rest] = view[first:]
        self._pos = (self._pos + size) % self.limit
        self._filled = min(self.limit, self._filled + size)

    @property
    def truncated(self) -> bool:
        """True when bytes were dropped from the front: the tail is not the whole body."""
        return self.seen > self._filled

    def tail(self) -> bytes:
        """The bytes held, oldest first (at most `limit`)."""
        if self._ring is None:
            return self._first if self._first is not None else b""
        if self._filled < self.limit:
            return bytes(self._ring[: self._filled])
        return bytes(self._ring[self._pos :]) + bytes(self._ring[: self._pos])
