"""Log volume bounds, driven by an injected clock: no sleeps, exact counts."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import socket
import threading
from typing import Any

import pytest

from gateway.observability import logsetup as logs
from gateway.observability.log_budget import OVERFLOW, LineBudget
from gateway.observability.log_limits import AccessSampler, StormGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def install(stream: io.StringIO, clock: Clock, **kw: Any) -> tuple[StormGuard, AccessSampler]:
    """The gateway's real logging set-up, with a clock the test moves."""
    guard = StormGuard(clock=clock, **kw.get("storm", {}))
    sampler = AccessSampler(clock=clock, **kw.get("access", {}))
    logs.configure(
        "info", stream=stream, storm_guard=guard, access_sampler=sampler, tick_seconds=None
    )
    return guard, sampler


# -- LineBudget ------------------------------------------------------------------------


def test_budget_admits_a_burst_per_window_and_reports_the_rest() -> None:
    budget = LineBudget(burst=3, window=10.0, report_every=10.0)
    admitted = [budget.admit(("k",), 100.0 + i * 0.01)[0] for i in range(50)]
    assert admitted == [True] * 3 + [False] * 47
    assert budget.sweep(109.0) == []  # not due yet
    (report,) = budget.sweep(110.5)
    assert (report.key, report.count) == (("k",), 47)
    assert budget.admit(("k",), 111.0)[0] is True  # a new window
    assert budget.sweep(200.0) == []
    assert len(budget) == 0  # quiet keys are forgotten


def test_budget_report_falls_due_with_the_next_line_of_the_key() -> None:
    budget = LineBudget(burst=1, window=1.0, report_every=5.0)
    for i in range(10):  # one line a 0.1 s: 1 admitted, 9 counted
        budget.admit(("k",), 100.0 + i / 10)
    admitted, reports = budget.admit(("k",), 106.0)
    assert admitted is True
    assert [(r.key, r.count) for r in reports] == [(("k",), 9)]


def test_budget_table_is_bounded_and_new_keys_share_the_overflow_key() -> None:
    budget = LineBudget(burst=2, window=60.0, report_every=60.0, max_keys=100)
    admitted = sum(budget.admit((f"message {i}",), 100.0)[0] for i in range(100_000))
    assert len(budget) == 101  # 100 keys + the overflow key
    assert admitted == 100 + 2  # each key's one line, then the overflow key's burst
    reports = budget.drain(101.0)
    assert sum(r.count for r in reports) == 100_000 - admitted
    assert [r.key for r in reports] == [OVERFLOW]


def test_budget_sweeps_idle_keys_to_make_room() -> None:
    budget = LineBudget(burst=1, window=1.0, report_every=1.0, max_keys=10)
    for i in range(10):
        budget.admit((f"old {i}",), 100.0)
    assert budget.admit(("new",), 105.0)[0] is True
    assert len(budget) == 1  # the idle keys went, "new" has its own key
    assert budget.admit(("new",), 105.0)[0] is False
    assert [r.key for r in budget.drain(106.0)] == [("new",)]


def test_budget_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        LineBudget(burst=0, window=1.0, report_every=1.0)


# -- StormGuard ------------------------------------------------------------------------


def test_an_error_storm_writes_a_burst_then_one_summary_per_window(
    stream: io.StringIO, clock: Clock
) -> None:
    install(stream, clock, storm={"burst": 10, "window": 60.0})
    log = logging.getLogger("aiohttp.server")
    for i in range(20_000):  # 20k identical errors in 50 s
        clock.now = 1000.0 + i * 0.0025
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionResetError:
            log.exception("Error handling request from %s", f"10.0.{i % 250}.1")
    assert len(lines(stream)) == 10
    clock.now = 1061.0  # a report is due 60 s after the first suppressed line
    logging.getLogger("gateway.other").info("something else")  # traffic: the report falls due
    out = lines(stream)
    assert len(out) == 12
    summary = out[10]
    assert summary["msg"] == "suppressed 19990 similar lines"
    assert summary["logger"] == "aiohttp.server"
    assert summary["level"] == "error"
    assert summary["suppressed"] == 19_990
    assert summary["similar_to"] == "Error handling request from %s"
    assert summary["exc_type"] == "ConnectionResetError"
    assert out[11]["msg"] == "something else"


def test_different_errors_are_limited_separately(stream: io.StringIO, clock: Clock) -> None:
    install(stream, clock, storm={"burst": 2, "window": 60.0})
    log = logging.getLogger("gateway.x")
    for _ in range(5):
        log.warning("invoice creation failed")
        log.warning("token pruning failed")
        log.error("invoice creation failed")  # another level: another key
    assert [(line["level"], line["msg"]) for line in lines(stream)] == [
        ("warning", "invoice creation failed"),
        ("warning", "token pruning failed"),
        ("error", "invoice creation failed"),
    ] * 2


def test_messages_differing_only_in_numbers_count_as_one(stream: io.StringIO, clock: Clock) -> None:
    install(stream, clock, storm={"burst": 3, "window": 60.0})
    for i in range(50):
        logging.getLogger("gateway.pruning").info(f"token pruning: checked {i}, deleted {i * 2}")
    assert len(lines(stream)) == 3


def test_the_asyncio_accept_loop_storm_is_bounded(stream: io.StringIO, clock: Clock) -> None:
    """The record asyncio writes when accept() fails with EMFILE, through asyncio's own
    exception handler (the one that logged a traceback per retry under fd exhaustion)."""
    install(stream, clock, storm={"burst": 5, "window": 60.0})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    try:
        for i in range(3000):
            clock.now = 1000.0 + i * 0.01  # 30 s of retries
            exc = OSError(errno.EMFILE, "Too many open files")
            try:
                raise exc
            except OSError:
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": exc,
                        "socket": listener,
                    }
                )
    finally:
        loop.close()
        listener.close()
    logs.unconfigure()  # shutdown writes the pending count
    out = lines(stream)
    assert len(out) == 6
    assert all(line["logger"] == "asyncio" for line in out)
    assert out[0]["exc_type"] == "OSError"
    assert out[5]["suppressed"] == 2995
    assert out[5]["similar_to"].startswith("socket.accept() out of system resource")


def test_reports_fall_due_on_the_tick_when_nothing_else_is_logged(
    stream: io.StringIO, clock: Clock
) -> None:
    guard, _ = install(stream, clock, storm={"burst": 1, "window": 60.0})
    for _ in range(5):
        logging.getLogger("gateway.x").error("store down")
    clock.now += 61
    guard.tick()  # what LogTicker does once a second
    assert [line["msg"] for line in lines(stream)] == [
        "store down",
        "suppressed 4 similar lines",
    ]


def test_the_ticker_thread_ticks_every_filter_and_stops() -> None:
    ticked = threading.Event()

    class Probe(StormGuard):
        def tick(self) -> None:
            ticked.set()

    ticker = logs.LogTicker([Probe()], interval=0.01)
    ticker.start()
    try:
        assert ticked.wait(timeout=10)
    finally:
        ticker.stop(timeout=10)
    assert not ticker._thread.is_alive()


def test_the_access_log_is_not_subject_to_the_storm_guard(
    stream: io.StringIO, clock: Clock
) -> None:
    install(stream, clock, storm={"burst": 1, "window": 60.0})
    access = logging.getLogger("gateway.access")
    for i in range(20):
        access.info("request", extra={"outcome": "paid", "status": 200, "token_id": f"{i:064x}"})
    assert len(lines(stream)) == 20


# -- AccessSampler ---------------------------------------------------------------------


def access(outcome: str | None, status: int, token_id: str | None = None) -> None:
    logging.getLogger("gateway.access").info(
        "request",
        extra={"outcome": outcome, "status": status, "token_id": token_id, "path": "/p"},
    )


def test_an_unpaid_flood_is_sampled_while_every_paid_request_keeps_its_line(
    stream: io.StringIO, clock: Clock
) -> None:
    install(stream, clock, access={"burst": 5, "window": 1.0, "report_every": 10.0})
    paid = 0
    for i in range(20_000):  # 20 s at 1000 unpaid requests a second
        clock.now = 1000.0 + i / 1000
        access("challenge", 402)
        access("rate_limited", 429)
        if i % 100 == 0:
            access("paid", 200, token_id=f"{i:064x}")
            access("paid", 502, token_id=f"{i:064x}")  # paid, upstream failed: still logged
            access("free", 200)
            paid += 3
    clock.now = 1020.0
    logs.unconfigure()
    out = lines(stream)
    by_outcome: dict[str, list[dict[str, Any]]] = {}
    for line in out:
        by_outcome.setdefault(line["outcome"], []).append(line)
    assert len(by_outcome["paid"]) + len(by_outcome["free"]) == paid
    for outcome in ("challenge", "rate_limited"):
        requests = [line for line in by_outcome[outcome] if line["msg"] == "request"]
        summaries = [line for line in by_outcome[outcome] if line["msg"] == "access log sampled"]
        assert len(requests) == 5 * 20  # 5 a second
        # one 10 s after the first suppressed line, the rest at shutdown
        assert [s["suppressed"] for s in summaries] == [9950, 9950]
        assert len(requests) + sum(s["suppressed"] for s in summaries) == 20_000
    assert len(out) == paid + 2 * (100 + 2)


def test_served_requests_are_never_sampled(stream: io.StringIO, clock: Clock) -> None:
    install(stream, clock, access={"burst": 1, "window": 1.0})
    for status in (200, 204, 304, 200):
        access(None, status)  # no outcome set, but served
    access("challenge", 402)
    access("challenge", 402)
    assert [line.get("status") for line in lines(stream)] == [200, 204, 304, 200, 402]


def test_outcome_keys_are_bounded(stream: io.StringIO, clock: Clock) -> None:
    _, sampler = install(stream, clock, access={"burst": 1, "window": 1.0, "max_keys": 16})
    for i in range(5000):
        access(f"refused_{i}", 401)
    assert len(sampler.budget) <= 17
    assert len(lines(stream)) == 16 + 1
