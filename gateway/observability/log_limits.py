"""Bounds on log volume: error storms and unpaid floods cannot fill the disk.

Two `logging.Filter`s, installed on the gateway's one log handler so they see
the records of every logger (aiohttp's, asyncio's, ours):

- `StormGuard`: repeated identical records (same logger, level, message
  template and exception type) are written `burst` times per window; the rest
  are counted and reported as one "suppressed K similar lines" line per key per
  window. An accept loop failing on EMFILE, or a parser error per request of a
  garbage flood, costs a few lines a minute instead of gigabytes.
- `AccessSampler`: the access log (`gateway.access`) keeps one line for every
  paid or served request; refusals and failures without a paid credential
  (402 challenges, 429s, 401s, 503s, ...) are written at most `burst` a second
  per outcome, with a periodic "access log sampled" line carrying the counts.
  It keys on the `outcome`, `status` and `token_id` extra fields that the
  access-log call site already sets, so that call site needs no change.

Summary records are emitted through the same handler (`sink`) and marked so
that no filter counts them again. `tick()` is called by `logs.LogTicker` once
a second so that reports fall due even when nothing else is logged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from gateway.observability.log_budget import OVERFLOW, Key, LineBudget, Suppressed

SUMMARY_ATTR = "l402_summary"
ACCESS_LOGGER = "gateway.access"
# Outcomes that are always logged on the access log: someone paid, or was served.
SERVED_OUTCOMES = frozenset({"paid", "free", "shadow"})

Clock = Callable[[], float]
Sink = Callable[[logging.LogRecord], object]

_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")
_TEMPLATE_CHARS = 160


class SummarizingFilter(logging.Filter):
    """Admits records through a `LineBudget`; writes reports through `sink`."""

    def __init__(self, budget: LineBudget, clock: Clock) -> None:
        super().__init__()
        self.budget = budget
        self.clock = clock
        self.sink: Sink | None = None
        self._lock = threading.Lock()
        self._next_sweep = float("-inf")

    def key(self, record: logging.LogRecord) -> Key | None:
        """The record's budget key; None = always written, never counted."""
        raise NotImplementedError

    def summary(self, report: Suppressed) -> logging.LogRecord:
        raise NotImplementedError

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get(SUMMARY_ATTR):
            return True
        key = self.key(record)
        if key is None:
            return True
        now = self.clock()
        with self._lock:
            admitted, reports = self.budget.admit(key, now)
            if now >= self._next_sweep:  # reports of other keys, while traffic flows
                self._next_sweep = now + 1.0
                reports = [*reports, *self.budget.sweep(now)]
        if reports:
            self._write(reports)
        return admitted

    def tick(self) -> None:
        """Write the reports that fell due (called periodically)."""
        now = self.clock()
        with self._lock:
            reports = self.budget.sweep(now)
        self._write(reports)

    def drain(self) -> None:
        """Write every pending count now (at shutdown)."""
        now = self.clock()
        with self._lock:
            reports = self.budget.drain(now)
        self._write(reports)

    def _write(self, reports: Iterable[Suppressed]) -> None:
        sink = self.sink
        if sink is None:
            return
        for report in reports:
            sink(self.summary(report))


def _summary_record(
    name: str, level: int, msg: str, fields: dict[str, object]
) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": msg}
    )
    record.__dict__.update(fields)
    record.__dict__[SUMMARY_ATTR] = True
    return record


def template_of(record: logging.LogRecord) -> str:
    """The message before %-formatting, numbers and addresses folded together, so
    that f-string messages that differ only in counts share a key."""
    msg = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    return _VARYING.sub("#", msg[:_TEMPLATE_CHARS])


class StormGuard(SummarizingFilter):
    """First `burst` identical records per `window` seconds; then one count per window."""

    def __init__(
        self,
        *,
        burst: int = 10,
        window: float = 60.0,
        max_keys: int = 1024,
        clock: Clock = time.monotonic,
        exempt: Iterable[str] = (ACCESS_LOGGER,),
    ) -> None:
        budget = LineBudget(burst=burst, window=window, report_every=window, max_keys=max_keys)
        super().__init__(budget, clock)
        self.exempt = frozenset(exempt)

    def key(self, record: logging.LogRecord) -> Key | None:
        if record.name in self.exempt:
            return None
        exc = record.exc_info[0].__qualname__ if record.exc_info and record.exc_info[0] else ""
        return (record.name, record.levelname, template_of(record), exc)

    def summary(self, report: Suppressed) -> logging.LogRecord:
        if report.key == OVERFLOW:
            name, level, template, exc = (
                "gateway.observability.logsetup",
                "WARNING",
                "(many different)",
                "",
            )
        else:
            name, level, template, exc = report.key
        fields: dict[str, object] = {
            "suppressed": report.count,
            "similar_to": template,
            "window_s": round(report.until - report.since, 3),
        }
        if exc:
            fields["exc_type"] = exc
        return _summary_record(
            name,
            logging.getLevelNamesMapping().get(level, logging.WARNING),
            f"suppressed {report.count} similar lines",
            fields,
        )


def always_kept(fields: Mapping[str, object]) -> bool:
    """An access line the sampler never drops: a paid credential was used, or the request
    was served (free, or a status below 400)."""
    if fields.get("token_id") is not None:
        return True
    if fields.get("outcome") in SERVED_OUTCOMES:
        return True
    status = fields.get("status")
    return isinstance(status, int) and status < 400


class AccessSampler(SummarizingFilter):
    """Every paid or served access line; at most `burst` a second per other outcome."""

    def __init__(
        self,
        *,
        burst: int = 5,
        window: float = 1.0,
        report_every: float = 10.0,
        max_keys: int = 256,
        clock: Clock = time.monotonic,
        logger: str = ACCESS_LOGGER,
    ) -> None:
        budget = LineBudget(
            burst=burst, window=window, report_every=report_every, max_keys=max_keys
        )
        super().__init__(budget, clock)
        self.logger = logger

    def key(self, record: logging.LogRecord) -> Key | None:
        if record.name != self.logger:
            return None
        fields = record.__dict__
        if always_kept(fields):
            return None
        outcome = fields.get("outcome")
        return (str(outcome) if outcome is not None else f"status_{fields.get('status')}",)

    def summary(self, report: Suppressed) -> logging.LogRecord:
        outcome = "(many different)" if report.key == OVERFLOW else report.key[0]
        return _summary_record(
            self.logger,
            logging.INFO,
            "access log sampled",
            {
                "outcome": outcome,
                "suppressed": report.count,
                "window_s": round(report.until - report.since, 3),
            },
        )
