"""The one fault every suite fakes: the passing of wall-clock time."""

from __future__ import annotations

import time


class FakeClock:
    """The gateway's wall clock; only moves when a test calls `advance`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() + 0.5 if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
