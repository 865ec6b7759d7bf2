"""Structured JSON logs: one object per line, with the request's id, route and outcome.

Every record of every logger (ours, aiohttp's, asyncio's) goes through one
handler with one formatter, so the guarantees below hold for all of them:

- Only whitelisted `extra` fields are emitted, so a careless `extra={...}`
  cannot leak a macaroon, preimage or root key into the logs.
- Messages, field values and traceback text pass through `logging_redact`;
  aiohttp's HTTP parser errors, which quote the client's raw bytes, are logged
  as their type and a fixed description only.
- Volume is bounded by `logging_limits`: repeated records are summarised, and
  the access log samples refusals while keeping every paid or served request.
- Output is JSON with ASCII escapes: a client cannot inject a line break or a
  terminal escape sequence into the log.

The formatter is on the hot path (one access line per request): constant
things (encoder, level names, the timestamp's whole-second prefix) are built
once, and redaction returns its input unchanged when nothing matches.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TextIO, cast

from gateway.observability import access_sink
from gateway.observability.log_files import (
    LogSetupError,
    QuietErrors,
    SafeStreamHandler,
    SecureFileHandler,
)
from gateway.observability.log_limits import (
    ACCESS_LOGGER,
    AccessSampler,
    StormGuard,
    SummarizingFilter,
    always_kept,
)
from gateway.observability.redaction import exception_text, redact, registered_secrets

__all__ = ["SAFE_FIELDS", "JsonFormatter", "LogSetupError", "LogTicker", "configure", "unconfigure"]

SAFE_FIELDS = (
    "request_id",
    "route",
    "outcome",
    "status",
    "method",
    "path",
    "duration_ms",
    "upstream_status",
    "client_ip",
    "token_id",
    "lnd_code",
    "lnd_method",
    "settle_index",
    "amt_paid_msat",
    "config",
    "error",
    # written by logging_limits' summary lines
    "suppressed",
    "similar_to",
    "exc_type",
    "window_s",
)
# Set by our own code from a verified token, never from request bytes; a 64-hex
# token id is what `l402-gateway revoke` needs, so the hex rule must not eat it.
TRUSTED_FIELDS = frozenset({"token_id"})
LEVELS = ("debug", "info", "warning", "error", "critical")
TICK_SECONDS = 1.0


class JsonFormatter(logging.Formatter):
    def __init__(
        self, fields: Iterable[str] = SAFE_FIELDS, trusted: Iterable[str] = TRUSTED_FIELDS
    ) -> None:
        super().__init__()
        self._fields = tuple(fields)
        self._trusted = frozenset(trusted)
        self._encode = _json_encoder()
        # AccessLines writes the access fields in this order, the token id unredacted
        order = [name for name in self._fields if name in ACCESS_FIELDS]
        self.fields_in_order = order == [
            "request_id", "route", "outcome", "status", "method", "path", "duration_ms",
            "upstream_status", "token_id", "error",
        ] and self._trusted == {"token_id"}  # fmt: skip
        self._levels = {name: name.lower() for name in logging.getLevelNamesMapping()}
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        cached, prefix = self._second
        if cached != second:  # one strftime per second, not per line
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        return f"{prefix}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as failure:  # a hostile __str__ or bad %-args: never the raw record
            return self._encode(
                {
                    "ts": self._timestamp(record.created, record.msecs),
                    "level": "error",
                    "logger": "gateway.logs",
                    "msg": "a log record could not be formatted",
                    "error": type(failure).__qualname__,
                    "source_logger": redact(str(record.name)),
                }
            )

    def _format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": self._levels.get(record.levelname) or record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        self._add_fields(out, record.__dict__)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"], out["exc"] = exception_text(record.exc_info)
        if record.stack_info:
            out["stack"] = redact(record.stack_info)
        return self._encode(out)

    def _add_fields(self, out: dict[str, object], fields: Mapping[str, object]) -> None:
        trusted = self._trusted
        for name in self._fields:
            value = fields.get(name)
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                out[name] = value if name in trusted else redact(value)  # type: ignore[arg-type]
            elif kind is int or kind is float or kind is bool:
                out[name] = value
            else:  # lists, paths, exceptions: rendered, then redacted
                out[name] = redact(str(value))

    def format_fields(self, logger: str, msg: str, fields: Mapping[str, object]) -> str:
        """The line an INFO record of `logger` with `msg` and these extra fields would be,
        stamped now: the same fields, order, redaction and encoding, without the record
        (written out piece by piece: half the time of a dict through the encoder)."""
        created = time.time()
        parts = [
            '{"ts":',
            _quote(self._timestamp(created, (created - int(created)) * 1000)),
            ',"level":"info","logger":',
            _quote(logger),
            ',"msg":',
            _quote(redact(msg)),
        ]
        trusted = self._trusted
        for name in self._fields:
            value = fields.get(name)
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                text = _quote(value if name in trusted else redact(value))  # type: ignore[arg-type]
            elif kind is int or kind is float or kind is bool:
                text = self._encode_scalar(value)
            else:
                text = _quote(redact(str(value)))
            parts.append(f',"{name}":{text}')
        parts.append("}")
        return "".join(parts)

    def _encode_scalar(self, value: object) -> str:
        """A number or bool exactly as the JSON encoder writes it."""
        if value is True:
            return "true"
        if value is False:
            return "false"
        if type(value) is float and not math.isfinite(value):
            return self._encode({"v": value})[5:-1]  # the encoder's words for nan/inf
        return repr(value)


_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _json_encoder() -> Callable[[dict[str, object]], str]:
    """Compact ASCII JSON. The C encoder is built once here: `json.dumps` and
    `JSONEncoder.encode` build a new one for every call."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the stdlib's pure-Python path
        return json.JSONEncoder(separators=(",", ":")).encode

    def refuse(value: object) -> object:
        raise TypeError(f"not JSON: {type(value).__qualname__}")

    chunks = make(
        None, refuse, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(out: dict[str, object]) -> str:
        return "".join(chunks(out, 0))

    return encode


class LogTicker:
    """A daemon thread that lets suppression reports fall due when nothing else logs."""

    def __init__(self, filters: Iterable[SummarizingFilter], interval: float = TICK_SECONDS):
        self._filters = tuple(filters)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for f in self._filters:
                try:
                    f.tick()
                except Exception:  # noqa: S112 - the ticker must outlive one bad report
                    continue


# The access record's fields (gateway.paywall.access) and their types: request_id,
# method, path str; route, outcome, token_id, error str or None; status int,
# upstream_status int or None; duration_ms a finite float.
ACCESS_FIELDS = frozenset(
    (
        "request_id",
        "route",
        "outcome",
        "status",
        "method",
        "path",
        "duration_ms",
        "upstream_status",
        "token_id",
        "error",
    )
)


QUOTED_CACHE = 1024


class AccessLines:
    """Access lines every request keeps, written without a log record (see
    gateway.observability.access_sink): measured on the bench, the record, the filters
    and a write per line were ~30 us of a ~155 us paid request, one process."""

    def __init__(self, handler: QuietErrors, formatter: JsonFormatter) -> None:
        self._handler = handler
        self._formatter = formatter
        self._quoted: dict[str, str] = {}  # value -> its redacted, quoted JSON text
        self._secrets = registered_secrets()
        self._root = logging.getLogger()
        self._logger = logging.getLogger(ACCESS_LOGGER)

    def __call__(self, fields: Mapping[str, object]) -> bool:
        logger = self._logger
        handlers = self._root.handlers
        if (
            len(handlers) != 1
            or handlers[0] is not self._handler
            or logger.handlers
            or logger.filters
            or not logger.propagate
            or logger.disabled
            or not logger.isEnabledFor(logging.INFO)
            or not always_kept(fields)
        ):
            return False
        if fields.keys() == ACCESS_FIELDS and self._formatter.fields_in_order:
            line = self._line(fields)
        else:  # another shape: the general writer (the same line, only slower)
            line = self._formatter.format_fields(ACCESS_LOGGER, "request", fields)
        self._handler.write_soon(line)
        return True

    def _line(self, f: Mapping[str, object]) -> str:
        """`JsonFormatter.format_fields` for the access record's own fields and types (see
        gateway.paywall.access), written out: the same text (tests/logs compares them) at
        a third of the cost. Strings are redacted as in any record, the token id is not."""
        created = time.time()
        stamp = self._formatter._timestamp(created, (created - int(created)) * 1000)
        parts = ['{"ts":"', stamp, '","level":"info","logger":"gateway.access","msg":"request"']
        parts.append(f',"request_id":{_quote(redact(f["request_id"]))}')  # type: ignore[arg-type]
        quoted = self._quoted
        if registered_secrets() is not self._secrets:  # redact's answers may have changed
            quoted.clear()
            self._secrets = registered_secrets()
        for name in ("route", "outcome", "method", "path"):  # values that repeat
            text = cast("str | None", f[name])
            if text is not None:
                value = quoted.get(text)
                if value is None:
                    if len(quoted) >= QUOTED_CACHE:  # bounded: paths come from clients
                        quoted.clear()
                    value = quoted[text] = _quote(redact(text))
                parts.append(f',"{name}":{value}')
            if name == "outcome":
                parts.append(f',"status":{f["status"]!r}')
        parts.append(f',"duration_ms":{f["duration_ms"]!r}')
        if f["upstream_status"] is not None:
            parts.append(f',"upstream_status":{f["upstream_status"]!r}')
        if f["token_id"] is not None:
            parts.append(f',"token_id":{_quote(f["token_id"])}')  # type: ignore[arg-type]
        if f["error"] is not None:
            parts.append(f',"error":{_quote(redact(f["error"]))}')  # type: ignore[arg-type]
        parts.append("}")
        return "".join(parts)


_installed: tuple[logging.Handler, LogTicker | None] | None = None


def configure(
    level: str = "info",
    *,
    log_file: Path | str | None = None,
    stream: TextIO | None = None,
    storm_guard: StormGuard | None = None,
    access_sampler: AccessSampler | None = None,
    tick_seconds: float | None = TICK_SECONDS,
) -> logging.Handler:
    """Send every logger's records, as JSON lines, to `log_file` (0600) or stderr.

    Replaces the handler a previous call installed (tests call this repeatedly).
    `tick_seconds=None` starts no ticker thread (tests that drive the clock).
    Raises `LogSetupError` for an unknown level or an unusable log file.
    """
    global _installed
    # Records carry nothing the JSON lines do not print: skip the caller's frame
    # walk and the thread/process lookups (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    name = level.strip().lower()
    if name not in LEVELS:
        raise LogSetupError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    handler: QuietErrors = (
        SecureFileHandler(Path(log_file)) if log_file is not None else SafeStreamHandler(stream)
    )
    formatter = JsonFormatter()
    handler.setFormatter(formatter)
    limits: list[SummarizingFilter] = [
        storm_guard or StormGuard(),
        access_sampler or AccessSampler(),
    ]
    for f in limits:
        f.sink = handler.handle
        handler.addFilter(f)
    unconfigure()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name.upper())
    bound_library_loggers(name.upper())
    logging.getLogger("aiohttp.access").disabled = True  # our access log carries more
    logging.captureWarnings(True)  # warnings go through the same redaction and limits
    ticker = LogTicker(limits, tick_seconds) if tick_seconds is not None else None
    if ticker is not None:
        ticker.start()
    _installed = (handler, ticker)
    access_sink.install(AccessLines(handler, formatter))
    return handler


# Libraries whose DEBUG records print request and response headers verbatim: hpack
# logs every header it encodes or decodes as a (name, value) tuple (cookies,
# `Proxy-Authorization`, bearer tokens, API keys, L402 and Payment credentials,
# and the operator's own `upstream_headers` secrets on HTTP/2 upstreams); h2
# does the same when given a logger. They are held at WARNING whatever the
# level: their DEBUG lines are frame-level noise to an operator, and redaction is
# a second line of defence, never the first.
BOUNDED_LIBRARY_LOGGERS = ("h2", "hpack")


def bound_library_loggers(level: str | int) -> None:
    """Hold the header-printing libraries' loggers at WARNING or above."""
    floor = max(logging.WARNING, logging.getLevelName(level) if isinstance(level, str) else level)
    for name in BOUNDED_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(floor)


def unconfigure() -> None:
    """Stop the ticker and close the handler `configure` installed (reports pending counts)."""
    global _installed
    if _installed is None:
        return
    handler, ticker = _installed
    _installed = None
    access_sink.install(None)
    if ticker is not None:
        ticker.stop()
    root = logging.getLogger()
    if handler in root.handlers:
        root.removeHandler(handler)
    handler.close()
