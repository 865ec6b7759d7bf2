"""The access line's direct path (gateway.observability.access_sink): the same line as the
log record would give, written after the event-loop iteration, before any later record,
and only when the gateway's own handler is the only listener."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.observability import access_sink, redaction
from gateway.observability import logsetup as logs
from gateway.observability.log_files import QuietErrors
from gateway.paywall.access import AccessRecord

TOKEN = "ab" * 32


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("info", stream=out, tick_seconds=None)
    yield out
    logs.unconfigure()


@contextlib.contextmanager
def only_ours() -> Iterator[None]:
    """The gateway's handler alone on the root logger, as in `serve` (pytest's own log
    capture adds a handler during each test, which sends every line through a record)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [h for h in saved if isinstance(h, QuietErrors)]
    try:
        yield
    finally:
        root.handlers[:] = saved


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def paid_record(path: str = "/premium") -> AccessRecord:
    record = AccessRecord("0123456789abcdef", "GET", path)
    record.route, record.outcome, record.token_id, record.upstream_status = (
        "premium",
        "paid",
        TOKEN,
        200,
    )
    return record


def test_a_kept_line_reads_as_the_record_would() -> None:
    out = io.StringIO()
    logs.configure("info", stream=out, tick_seconds=None)
    try:
        with only_ours():
            paid_record("/premium?x=L402 " + "A" * 60).done(200)  # the direct path
        direct = lines(out.getvalue())
        # pytest's capture handler is another listener: a log record this time
        paid_record("/premium?x=L402 " + "A" * 60).done(200)
    finally:
        logs.unconfigure()
    first, second = direct[0], lines(out.getvalue())[1]
    for line in (first, second):
        line.pop("ts")
        line.pop("duration_ms")
    assert first == second
    assert first["token_id"] == TOKEN  # trusted: kept whole
    assert "AAAAAAAAAAAA" not in json.dumps(first)  # the path is redacted as in any record
    assert first["logger"] == "gateway.access"
    assert (first["level"], first["msg"], first["status"]) == ("info", "request", 200)


def test_inside_a_loop_lines_wait_for_the_iteration_and_precede_later_records(
    stream: io.StringIO,
) -> None:
    async def serve() -> tuple[str, str]:
        paid_record("/one").done(200)
        paid_record("/two").done(200)
        queued = stream.getvalue()  # nothing written while the iteration runs
        logging.getLogger("gateway.serve").warning("a later record")
        ordered = stream.getvalue()
        paid_record("/three").done(200)
        await asyncio.sleep(0)  # the end of this iteration: the queued line is written
        return queued, ordered

    with only_ours():
        queued, ordered = asyncio.run(serve())
    assert queued == ""
    assert [line.get("path") or line["msg"] for line in lines(ordered)] == [
        "/one",
        "/two",
        "a later record",
    ]
    assert [line.get("path") for line in lines(stream.getvalue())][-1] == "/three"


def test_refusals_still_go_through_the_sampler(stream: io.StringIO) -> None:
    with only_ours():
        for _ in range(20):  # 402s without a credential: at most the sampler's burst is kept
            record = AccessRecord("0123456789abcdef", "GET", "/premium")
            record.route, record.outcome = "premium", "challenge"
            record.done(402)
    kept = [line for line in lines(stream.getvalue()) if line["msg"] == "request"]
    assert 1 <= len(kept) < 20


def test_a_capturing_handler_on_the_access_logger_sees_records(stream: io.StringIO) -> None:
    seen: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("gateway.access")
    capture = Capture()
    logger.addHandler(capture)
    try:
        paid_record().done(200)
    finally:
        logger.removeHandler(capture)
    assert [r.__dict__["token_id"] for r in seen] == [TOKEN]


def test_queued_lines_reach_a_log_file_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    logs.configure("info", log_file=path, tick_seconds=None)

    async def serve() -> None:
        paid_record("/last").done(200)  # queued; the process stops before the loop turns

    try:
        with only_ours():
            asyncio.run(serve())
    finally:
        logs.unconfigure()
    assert [line["path"] for line in lines(path.read_text())] == ["/last"]


def test_a_secret_registered_later_is_redacted_from_repeated_values(stream: io.StringIO) -> None:
    """The direct path remembers redacted route, outcome, method and path texts; an
    upstream secret registered at a reload must still be redacted from them."""
    secret = "UpstreamKey-" + "Q7" * 8
    try:
        with only_ours():
            paid_record(f"/premium/{secret}").done(200)
            redaction.register_secrets([secret])
            paid_record(f"/premium/{secret}").done(200)
    finally:
        redaction.forget_secrets()
    first, second = lines(stream.getvalue())
    assert first["path"] == f"/premium/{secret}"  # not a secret yet
    assert secret not in second["path"]
    assert second["path"] == "/premium/[redacted]"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"route": None, "outcome": None, "upstream_status": None},
        {"error": "after the response started: upstream reset", "upstream_status": 502},
        {"token_id": None, "outcome": "free"},
        {"method": "L402 " + "B" * 50, "path": "/x?query=secret", "request_id": "f" * 64},
    ],
)
def test_the_written_out_line_is_the_general_one(
    stream: io.StringIO, changes: dict[str, object]
) -> None:
    fields: dict[str, object] = {
        "request_id": "0123456789abcdef012345",
        "route": "premium",
        "outcome": "paid",
        "status": 200,
        "method": "GET",
        "path": "/premium",
        "duration_ms": 0.125,
        "upstream_status": 200,
        "token_id": TOKEN,
        "error": None,
    } | changes
    sink = access_sink._sink
    assert isinstance(sink, logs.AccessLines)
    fast = json.loads(sink._line(fields))
    general = json.loads(sink._formatter.format_fields("gateway.access", "request", fields))
    fast.pop("ts")
    general.pop("ts")
    assert fast == general
    assert list(fast) == list(general)  # the same order too
