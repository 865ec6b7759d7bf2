"""How many log lines a key may write: the first `burst` per window, then counts.

Pure bookkeeping (no logging, no clock of its own, no locking): the callers pass
`now`, so tests drive it with a fake clock and never sleep. Used twice: for
error storms (key = logger, level, message template, exception type) and for
the sampled access log (key = outcome).

Bounded: at most `max_keys` keys are tracked. When the table is full, idle keys
are swept out; if every key is still live, new keys share one overflow key, so
a storm of ever-different messages is limited too instead of growing the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Key = tuple[str, ...]
OVERFLOW: Key = ("*overflow*",)


@dataclass(frozen=True, slots=True)
class Suppressed:
    """`count` lines of `key` were not written between `since` and `until`."""

    key: Key
    count: int
    since: float
    until: float


@dataclass(slots=True)
class _Window:
    start: float  # of the current admission window
    passed: int = 0  # lines admitted in the current window
    pending: int = 0  # lines suppressed and not yet reported
    pending_since: float = 0.0


class LineBudget:
    """At most `burst` lines per key per `window` seconds; a report of the rest
    at most every `report_every` seconds per key."""

    def __init__(
        self, *, burst: int, window: float, report_every: float, max_keys: int = 1024
    ) -> None:
        if burst < 1 or window <= 0 or report_every <= 0 or max_keys < 1:
            raise ValueError("burst, window, report_every and max_keys must be positive")
        self.burst = burst
        self.window = window
        self.report_every = report_every
        self.max_keys = max_keys
        self._windows: dict[Key, _Window] = {}
        self._last_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._windows)

    def admit(self, key: Key, now: float) -> tuple[bool, Sequence[Suppressed]]:
        """Whether this line may be written, and the reports that fell due (usually none)."""
        reports: Sequence[Suppressed] = ()
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                key, reports = self._make_room(key, now)
                window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now)
        if now - window.start >= self.window:
            window.start = now
            window.passed = 0
        report = self._due(key, window, now)
        if report is not None:
            reports = [*reports, report]
        if window.passed < self.burst:
            window.passed += 1
            return True, reports
        if window.pending == 0:
            window.pending_since = now
        window.pending += 1
        return False, reports

    def sweep(self, now: float) -> list[Suppressed]:
        """Reports that fell due; forget keys that have been quiet for a whole period."""
        self._last_sweep = now
        reports: list[Suppressed] = []
        idle = max(self.window, self.report_every)
        for key, window in list(self._windows.items()):
            report = self._due(key, window, now)
            if report is not None:
                reports.append(report)
            elif window.pending == 0 and now - window.start >= idle:
                del self._windows[key]
        return reports

    def drain(self, now: float) -> list[Suppressed]:
        """Every pending count, due or not (at shutdown), and forget all keys."""
        reports = [
            Suppressed(key, w.pending, w.pending_since, now)
            for key, w in self._windows.items()
            if w.pending
        ]
        self._windows.clear()
        return reports

    def _due(self, key: Key, window: _Window, now: float) -> Suppressed | None:
        if window.pending and now - window.pending_since >= self.report_every:
            report = Suppressed(key, window.pending, window.pending_since, now)
            window.pending = 0
            return report
        return None

    def _make_room(self, key: Key, now: float) -> tuple[Key, Sequence[Suppressed]]:
        """Sweep idle keys (at most once a second: a sweep walks the table), else overflow."""
        reports: Sequence[Suppressed] = ()
        if now - self._last_sweep >= min(self.window, 1.0):
            reports = self.sweep(now)
        return (key if len(self._windows) < self.max_keys else OVERFLOW), reports
